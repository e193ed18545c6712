"""Planner prompt templates as data files (installed as `agentdag.planners`)."""
