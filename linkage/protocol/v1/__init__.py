"""Generated from proto/linkage/v1 by `make proto`; do not edit."""
