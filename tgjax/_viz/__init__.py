"""Diagrams and notation."""
