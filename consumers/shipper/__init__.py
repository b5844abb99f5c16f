"""The log shipping agent: follows files like ``tail -F`` and sends their lines to a topic.

    >>> shipper = Shipper("weblogs", ["/var/log/nginx/access.log", "/var/log/app/*.log"],
    ...                   bootstrap_servers="127.0.0.1:9092",
    ...                   state_file="/var/lib/headrace/shipper.json", key_field="client")
    >>> shipper.run()                      # until shipper.stop() from another thread

    python -m consumers.shipper --topic weblogs --bootstrap-server 127.0.0.1:9092 \\
        --state-file /var/lib/headrace/shipper.json /var/log/nginx/access.log '/var/log/app/*.log'

Each line (bytes, without its ``\\n``; a partial last line waits for its newline) becomes one
message, keyed by a JSON field of the line with ``key_field``.  Glob patterns are expanded again
every ``scan_interval`` seconds, so new files are picked up.  A file is an inode: when its path
names another inode (logrotate's rename), the old file is read to its end through the open
descriptor, and kept open for ``rotate_wait`` seconds without new data (a writer may not have
reopened yet), while the new file is read from its start; a file shorter than our position was
truncated (copytruncate) and is read again from 0.

Delivery is at least once.  Per file, the offsets of sent lines are kept in order, and the
committed position only moves to the end of the longest acknowledged prefix; the state file
(JSON: path, device, inode and offset per file, replaced atomically) is written every poll loop
when it changed.  After kill -9 the shipper resumes from there: nothing is lost, and at most
the lines that were sent but not yet acknowledged are sent twice.  A failed delivery (the
producer already retried) stops the file's position where it was and re-reads the file from
its committed position after a backoff.

On start, saved files are found by (device, inode) first, then by path.  A path that now names
an inode we have not seen was rotated while we were away: the new file is read from its start,
and the old one, if it is still in the same directory under another name, is read to its end.
Files without saved state start at their end (after the last complete line) unless
``from_beginning``; files that appear after the start are new and always read from their start.
"""

from .agent import Shipper
from .command import add_arguments, main, run
from .state import StateError, load_state

__all__ = [
    "Shipper",
    "StateError",
    "add_arguments",
    "load_state",
    "main",
    "run",
]
