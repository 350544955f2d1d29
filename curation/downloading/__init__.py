"""Download stage internals: URL slices, the img2dataset child process, one slice per Dask task."""
