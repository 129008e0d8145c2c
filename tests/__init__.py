"""
Migrate's trial suite.
"""

import atexit
import os
import shutil
import tempfile

# twistd migrate keeps detached sessions in a default store under the
# user's state directory: the processes the tests start use one of the
# test run's own, removed when it ends.
_state = tempfile.mkdtemp(prefix="migrate-tests-state-")
atexit.register(shutil.rmtree, _state, True)
os.environ.pop("STATE_DIRECTORY", None)
os.environ["XDG_STATE_HOME"] = _state
