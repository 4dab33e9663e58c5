"""Multimodal and continual sinusoid/line/quadratic/cubic regression (tables T1, T2)."""
