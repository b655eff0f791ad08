"""Image archive formats: the code that also runs on the source host (Python 3.8, standard library only).

Everything under formats/ travels to an ssh source host, where the agent (`agent.py`) runs the
same rewrite the local side runs; remote/pack.py ships this folder whole and nothing else. So it
imports nothing from docker_d2d outside formats/ (tests/unit/test_import_graph.py holds it to
that, and runs it under Python 3.8): what the rest of docker-d2d shares with it (the error base,
digests) lives here, and the core builds on it.

    errors.py digests.py oci.py   the error base, digests and chain ids, the OCI layout's names
    tarstream.py        tar headers and bodies over chunk iterators
    entries.py          the typed entries a source yields (layers, documents, links) and what a
                        rewrite produces (files, written images, cuts, its result)
    readers/            one reader per save format: a `docker save` stream -> typed entries
    stores/             readers of the engines' own storage (overlay2, containers/storage, the
                        containerd content store) -> the same entries, only the layers that travel
    filter.py           per layer: leave out, send, spool to learn it, or hold back (checkpoints);
                        hasher.py: a layer's blob digest and diff id as it passes; spooling.py:
                        a full spool directory said as one error naming it
    checkpoint.py       where a resumable stream ends an archive, with partial images
    writers.py          one writer per output format: legacy manifest.json, OCI index.json
    rewrite.py          the composition: entries -> filter -> writer -> the archive(s) to load
    spec.py             what a rewrite is told (StreamSpec) and its wire form
    agent.py            the program run on the source host; prefetch.py: reading its export ahead
"""
