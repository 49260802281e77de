"""training subpackage of tia_scanner_robust."""
