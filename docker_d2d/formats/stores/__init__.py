"""Readers of the engines' own storage (#18): a layer read straight from the store, verified, in
place of the whole-image export. See README.md here for how they plug into the copy path.

    common       errors, StoreLayer / StoredImage, the verifying body, the Store protocol
    tarsplit     tar-split reassembly: a layer tar, byte for byte, from metadata + diff directory
    layerdir     the tar-split + overlay diff directory layer both graphdriver stores share
    graphdriver  Docker with a graphdriver (overlay2): layerdb + imagedb
    containers   containers/storage (Podman, rootful and rootless): layers.json + overlay
    containerd   containerd's content store (Docker's containerd image store, containerd)
    probe        find the store through the engine's /info (or /libpod/info), or say why not

Python 3.8, standard library only: this package travels to the source host with the agent.
"""
