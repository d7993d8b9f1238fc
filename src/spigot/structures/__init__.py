"""Structures: what the argmax ranges over."""

from spigot.structures.base import Structure
from spigot.structures.categorical import Categorical
from spigot.structures.graph import DependencyGraph
from spigot.structures.labeled_graph import LabeledDependencyGraph
from spigot.structures.tree import DependencyTree

__all__ = [
    "Categorical",
    "DependencyGraph",
    "DependencyTree",
    "LabeledDependencyGraph",
    "Structure",
]
