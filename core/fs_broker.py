"""The embedded Celery broker: kombu's filesystem transport, with each message written whole before it can be read.

kombu's own ``_put`` creates the message's file under its final name and only then writes it. A worker polling
the folder can take the file in between (``_get`` moves it away without looking at the writer's lock) and read
it empty: the worker stops with "Unrecoverable error: JSONDecodeError", and the message is gone. Seen in CI
with a worker polling every 0.2 s while the web process queued an outbound SMS.

Here the message is written to a temporary name the queue's pattern does not match, flushed, and renamed to
its final name, which is atomic within one folder: a reader sees no file or the whole message.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        """Put ``payload`` onto ``queue``: the same file name as kombu's, appearing only once complete."""
        key = uuid.uuid4()
        final = os.path.join(self.data_folder_out, f"{round(monotonic() * 1000)}_{key}.{queue}.msg")
        # Named so that no queue's pattern (".<queue>.msg") matches it.
        partial = os.path.join(self.data_folder_out, f"partial-{key}.tmp")
        try:
            with open(partial, "wb", buffering=0) as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(partial)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
