"""Recipes: several hfcompress commands in one YAML file (or a named preset), checked first, resumable."""

from .recipe import Recipe, Step, plan, preset_names, read_recipe
from .runner import run_recipe

__all__ = ["Recipe", "Step", "plan", "preset_names", "read_recipe", "run_recipe"]
