"""Our own event ids: version-4 UUIDs, never repeated, not even across a fork."""

import os
import uuid

from api.ids import CHUNK, RandomIds


def test_ids_are_version_4_and_unique_across_buffer_refills():
    ids = RandomIds()
    made = [i for _ in range(3 * CHUNK // 16 // 100) for i in ids.new(100)]
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in made)
    assert len(set(made)) == len(made)


def test_a_forked_child_does_not_reuse_the_parents_buffer():
    ids = RandomIds()
    ids.new(1)  # the parent now holds a buffer with ids still unused
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.write(write, ids.new(1)[0].bytes)
        os._exit(0)
    os.waitpid(child, 0)
    from_child = uuid.UUID(bytes=os.read(read, 16))
    assert from_child != ids.new(1)[0]
