"""models subpackage of tia_scanner_robust."""
