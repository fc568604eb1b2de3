"""Run CPython's own test_asyncore and test_asynchat against coserve's modules.

    python tests/cpython_conformance.py [-v]

The only change is the module under test: ``coserve.compat.install()`` makes
``import asyncore``/``import asynchat`` (which the test modules do) load
coserve's. The tests come from the running interpreter's ``test`` package;
nothing of CPython's is copied into this project. Exit status 77 means the
interpreter has no such tests (a distribution that strips the ``test`` package,
or Python 3.12+, which removed them with the modules).
"""

import sys
import unittest

import coserve.compat

coserve.compat.install()
try:
    import test.test_asynchat
    import test.test_asyncore  # noqa: F401
except ImportError as e:
    print(f"skipped: this interpreter has no test_asyncore/test_asynchat ({e})")
    sys.exit(77)

import asynchat  # noqa: E402 - after install(), on purpose
import asyncore  # noqa: E402

import coserve.asynchat  # noqa: E402
import coserve.asyncore  # noqa: E402

assert asyncore is coserve.asyncore and asynchat is coserve.asynchat, "the swap did not take"
verbosity = 2 if "-v" in sys.argv else 1
suite = unittest.defaultTestLoader.loadTestsFromNames(["test.test_asyncore", "test.test_asynchat"])
result = unittest.TextTestRunner(verbosity=verbosity).run(suite)
print(
    f"{result.testsRun - len(result.failures) - len(result.errors)} passed, "
    f"{len(result.failures) + len(result.errors)} failed, {len(result.skipped)} skipped"
)
sys.exit(0 if result.wasSuccessful() else 1)
