"""Where input data comes from: layouts, image/IDX/TFRecord/TSV readers, local and remote storage.

Below the pipeline, the registry and the server: each reads data through this package, so all
three read the same formats with the same checks."""
