"""metrics subpackage of tia_scanner_robust."""
