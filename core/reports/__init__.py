"""Reports across runs and for users: runs side by side (compare), the exported model."""
