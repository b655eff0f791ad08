"""Engines: the Engine API client over the transport it is given, and what it needs below it.

client.py        Engine: the calls a copy makes (inspect, export, load, tag, ...); open_engine
api.py           the plumbing: requests, errors named by side, API version negotiation
answers.py       reading the engine's answers; failures.py: wording transport errors
transports.py    one transport per scheme (unix, tcp+TLS, ssh); watch.py: timeouts and the
                 stall watchdog; ssh.py + pool.py: the run's ssh connections
probe.py         what a containerd store holds (probes); inspect_cache.py: inspect answers kept
protocol.py      what a transfer needs of an engine, for engine kinds beside this client
containerd/      the other engine kind: a Kubernetes node's containerd through its `ctr`
sides.py         which of the two a side of a copy is; a kind or k3d cluster as its node containers
"""
