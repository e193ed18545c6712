"""First-party tools and MCP servers shipped with agentdag (installed as `agentdag.tools`)."""
