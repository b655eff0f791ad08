"""A Kubernetes node's containerd (no Docker), driven through its own `ctr`.

node.py          NodeEngine: what a transfer asks of a destination or a source, in ctr commands
listing.py       ctr's tables and the node's images in a plan's terms (pure)
runner.py        running ctr here (a local socket) or over ssh; in_container.py: in a kind or k3d
                 node container through the local engine's exec and archive API
inflate.py       a compressed body made plain for a 1.x ctr
"""
