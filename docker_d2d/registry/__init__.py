"""One registry client (auth, manifests, blobs) for --via, registry-first bases and manifest lookups.

refs.py      registry addresses and image references' registries
auth.py      credentials from the user's Docker config (as `docker login` left them)
client.py    Registry: blobs, manifests, token or basic auth, anonymous reads
layers.py    the registry descriptors of layers an engine pulled (best effort)
"""
