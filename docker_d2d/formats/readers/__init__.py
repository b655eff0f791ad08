"""One reader per save format: how each engine's `docker save` names its entries, read into typed entries.

legacy.py      Docker < 25: '<v1 id>/layer.tar', v1 ids predicted from the chain
oci.py         Docker >= 25 with a graphdriver: an OCI layout of uncompressed blobs;
               the containerd image store: the same layout, blobs as the store holds them
podman.py      Podman's docker-archive: '<diff id>.tar'
export.py      the stream itself: tar entries, bounded metadata, each name read by its format
"""
