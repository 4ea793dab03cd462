"""Core layer: settings, rules, ids, errors and pure helpers; imports nothing from the layers above."""
