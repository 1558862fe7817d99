"""ML Metadata as shared infrastructure: backend parsing, the Store, write locks, lineage reads.

The pipeline and the registry both stand on it; it imports neither."""
