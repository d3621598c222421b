"""The decorators every kernel is compiled with, named for how a function is compiled, and the
disk cache they share.

All of them cache to disk, release the GIL (``nogil=True``) and go without Numba's
reference-counting runtime (``_nrt=False``): no kernel allocates, and without the runtime an
array view costs no atomic incref/decref.
See docs/kernels.md for why each exists and what it was measured to buy.
"""

import hashlib
import pickle
from importlib.resources import files

import numpy as np

try:
    import fcntl
except ImportError:     # Windows: no advisory locks; Numba's atomic file replacement only
    fcntl = None

from numba import config, njit
from numba.np.numpy_support import from_dtype
from numba.core.compiler_lock import global_compiler_lock
from numba.core.caching import (CompileResultCacheImpl, FunctionCache, InTreeCacheLocator,
                                UserProvidedCacheLocator, UserWideCacheLocator,
                                ZipCacheLocator)


def _kernel_sources_digest() -> str:
    """A digest of every module of this package, by name and content (in a zip file too)."""
    digest = hashlib.sha256()
    modules = (entry for entry in files(__package__).iterdir() if entry.name.endswith(".py"))
    for module in sorted(modules, key=lambda entry: entry.name):
        digest.update(module.name.encode() + b"\0" + module.read_bytes() + b"\0")
    return digest.hexdigest()


# Numba stamps a cached kernel with its own file's content only, so a kernel that inlined a
# helper from another module would outlive an edit to that helper (numba issue 1833): every
# kernel is stamped with all the package's sources instead.
_SOURCES_STAMP = _kernel_sources_digest()


class _StampedBySources:
    def get_source_stamp(self):
        return _SOURCES_STAMP


class _UserProvidedLocator(_StampedBySources, UserProvidedCacheLocator):
    """``NUMBA_CACHE_DIR``."""


class _InTreeLocator(_StampedBySources, InTreeCacheLocator):
    """``kernels/__pycache__``."""


class _UserWideLocator(_StampedBySources, UserWideCacheLocator):
    """The user's cache directory, where ``__pycache__`` is not writable."""


class _ZipLocator(_StampedBySources, ZipCacheLocator):
    """The user's cache directory, for a package imported from a zip file."""


class _KernelCacheImpl(CompileResultCacheImpl):
    _locator_classes = [_UserProvidedLocator, _InTreeLocator, _UserWideLocator, _ZipLocator]


class KernelCache(FunctionCache):
    """Numba's per-function disk cache, fresh only while no module of the package changed,
    shared safely by processes that start cold together (a cluster's workers, ``fastmlp
    compile``'s jobs).

    Numba writes each file atomically, but saving an entry reads the function's index, picks
    a free data file and writes both, so two processes saving at once can leave an index
    naming the other's code; and each would compile the kernel itself. So two advisory locks:
    the index's, shared to load and exclusive to save (held for that only), and one per
    kernel (signature and closure constants), exclusive from a cache miss until the compile
    ends: the first process compiles, the others wait and load its result. A compile holds
    its kernel's lock while it takes those of the kernels it calls, never the reverse, so
    processes cannot wait on one another in a cycle."""
    _impl_class = _KernelCacheImpl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._compiling = None  # the kernel's lock file while this process compiles it

    def load_overload(self, sig, target_context):
        if fcntl is None or self._compiling is not None:
            return self._load(sig, target_context)
        cres = self._load(sig, target_context)
        if cres is not None:
            return cres
        key = repr(self._index_key(sig, target_context.codegen())).encode()
        self._compiling = self._lock_file(hashlib.sha256(key).hexdigest()[:16])
        fcntl.flock(self._compiling, fcntl.LOCK_EX)
        # Another process may have saved it while this one waited.
        cres = self._load(sig, target_context)
        if cres is not None:
            self.release()
        return cres

    def _index_key(self, sig, codegen):
        """Numba's key, with the closure's cells hashed by _closure_bytes: Numba pickles a
        captured dispatcher with a per-process id, so a kernel closing over another (the
        per-sample kernels over their shared upper layers) would miss the cache in every new
        process."""
        key = super()._index_key(sig, codegen)
        closure = self._py_func.__closure__
        if closure is None:
            return key
        code_hash, _ = key[2]
        return (*key[:2], (code_hash, hashlib.sha256(_closure_bytes(closure)).hexdigest()))

    def save_overload(self, sig, data):
        if fcntl is None:
            return super().save_overload(sig, data)
        with self._lock_file("index") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            super().save_overload(sig, data)

    def release(self) -> None:
        """End this process's compile, saved or failed: the others may load or compile."""
        if self._compiling is not None:
            self._compiling.close()     # closing the file releases its lock
            self._compiling = None

    def _load(self, sig, target_context):
        if fcntl is None:
            return super().load_overload(sig, target_context)
        with self._lock_file("index") as lock:
            fcntl.flock(lock, fcntl.LOCK_SH)
            return super().load_overload(sig, target_context)

    def _lock_file(self, name: str):
        self._impl.locator.ensure_cache_path()
        return open(f"{self._cache_file._index_path}.{name}.lock", "a+b")


def has_kernel(dispatcher, dtype) -> bool:
    """Whether ``dispatcher`` has a kernel whose first argument holds ``dtype``, compiled in
    this process or fresh in its disk cache for this CPU (a cache of other sources, another
    Numba or another CPU holds none): whether a first call would compile."""
    if config.DISABLE_JIT:
        return True
    element = from_dtype(np.dtype(dtype))
    signatures = list(dispatcher.overloads)
    cache = getattr(dispatcher, "_cache", None)
    if isinstance(cache, KernelCache):
        cpu = dispatcher.targetctx.codegen().magic_tuple()
        signatures += [key[0] for key in cache._cache_file._load_index() if key[1] == cpu]
    return any(signature[0].dtype == element for signature in signatures)


def _closure_bytes(closure) -> bytes:
    """A closure's cells as bytes that every process makes alike: a captured dispatcher as its
    function's name, bytecode and (recursively) closure; anything else pickled."""
    cells = []
    for cell in closure:
        value = cell.cell_contents
        function = getattr(value, "py_func", None)
        if function is not None:
            value = ("dispatcher", function.__module__, function.__qualname__,
                     function.__code__.co_code,
                     _closure_bytes(function.__closure__) if function.__closure__ else b"")
        cells.append(value)
    return pickle.dumps(tuple(cells), protocol=4)


# LLVM's optimisation level for the kernels (Numba's default is 3). The kernels spell out
# their SIMD, so -O1 leaves their speed as it was and makes each compile's LLVM passes about a
# quarter shorter (docs/kernels.md). Set only while a kernel compiles, under Numba's compiler
# lock, so the user's own Numba functions keep NUMBA_OPT.
OPT_LEVEL = config._OptLevel(1)


def _releasing_after_compile(dispatcher):
    """The dispatcher's ``compile`` (cache lookup, compile on a miss, save) at OPT_LEVEL,
    releasing its cache's lock when the outermost call ends, also by an error. Inside Numba's
    compiler lock, which ``compile`` takes too: one thread of a process at a time holds the
    lock."""
    compile_ = dispatcher.compile

    def compile(sig):
        with global_compiler_lock:
            outermost = dispatcher._cache._compiling is None
            opt, config.OPT = config.OPT, OPT_LEVEL
            try:
                return compile_(sig)
            finally:
                config.OPT = opt
                if outermost:
                    dispatcher._cache.release()
    return compile


def _cached(compile_):
    """``compile_`` (an ``njit`` without ``cache``), caching its kernels in a KernelCache.

    This is what ``cache=True`` does, with the cache class replaced."""
    def decorate(function):
        dispatcher = compile_(function)
        if not config.DISABLE_JIT:
            dispatcher._cache = KernelCache(function)
            dispatcher.compile = _releasing_after_compile(dispatcher)
        return dispatcher
    return decorate


def specialised(*constants):
    """A decorator naming a kernel that a factory makes for ``constants`` after them (its
    ``__qualname__`` gets them as a suffix), to be applied before the compiling decorator.

    Numba names a compiled function by its qualified name and a per-process counter, and its
    disk cache keeps those names: the closures a factory makes for different constants,
    compiled in different processes, can share a name, and a process that loads two of them
    from the cache and calls one from another kernel links the call to whichever it loaded
    first (the many-epochs kernel then trained another activation's network). Named after
    their constants, they cannot."""
    suffix = "_".join(str(constant) for constant in constants)

    def name(function):
        function.__qualname__ = f"{function.__qualname__}_{suffix}"
        return function
    return name


# Compiled on its own, callable from Python and from other kernels.
standalone = _cached(njit(nogil=True, _nrt=False))
# Inlined into each caller at Numba-IR level: helpers that return array views (a function
# compiled without the runtime cannot return one), small helpers, and those that pick an
# activation or loss by its code, so that a caller holding the code as a constant compiles
# only that branch.
inline_ir = _cached(njit(nogil=True, _nrt=False, inline="always"))
# Compiled once, then inlined by LLVM into each caller: a call passing a dozen arrays costs as
# much as a small layer's work. Only kernels call these, so they go without the Python and C
# wrappers, which lengthen the first compile.
_LLVM_INLINED = dict(nogil=True, _nrt=False, forceinline=True, no_cpython_wrapper=True,
                     no_cfunc_wrapper=True)
inline_llvm = _cached(njit(**_LLVM_INLINED))
# The same, with LLVM free to reassociate sums and contract multiply-adds (fastmath's "reassoc"
# and "contract" only), for loops whose sums should go in SIMD partial sums.
inline_llvm_reassociating = _cached(njit(**_LLVM_INLINED, fastmath={"reassoc", "contract"}))
