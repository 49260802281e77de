"""Tests of feature extraction."""
