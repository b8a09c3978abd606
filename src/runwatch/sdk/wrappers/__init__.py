"""The patches :mod:`runwatch.sdk.autowrap` applies to agent libraries, one module per library.

Stdlib only at import time; each module is imported only when its library is (see
:data:`runwatch.sdk.autowrap.PATCHES`). Every patch is idempotent and returns False when the
library's internals are not what it expects (the library then works unchanged).
"""
