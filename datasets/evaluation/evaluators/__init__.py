"""Evaluators of the stages that exist; each module registers itself with the registry."""
