"""The BPF layer shared by the kernel sensor and the enforcers.

- :mod:`runwatch.bpf.libbpf`: the ctypes binding of ``libbpf.so.1`` and its error type;
- :mod:`runwatch.bpf.object`: :class:`~runwatch.bpf.object.BpfObject` (open, load, attach,
  maps, close with every link destroyed);
- :mod:`runwatch.bpf.ringbuf`: the mmap ring buffer reader;
- :mod:`runwatch.bpf.layout`: ``struct`` formats derived from ctypes mirrors of C structs;
- :mod:`runwatch.bpf.spec`: an object declared as data (programs, maps, shared structs),
  checked against the compiled object by the layout tests.
"""
