import os
import threading

import pytest

from ser_model.serving.torch_thread import TorchThread


def test_every_call_runs_on_one_thread_whoever_makes_it_and_errors_come_back():
    torch_thread = TorchThread()
    seen = []
    callers = [threading.Thread(target=lambda: seen.append(torch_thread.run(threading.get_ident))) for _ in range(4)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()
    # A call from the torch thread itself runs there at once instead of waiting for itself.
    assert torch_thread.run(lambda: torch_thread.run(threading.get_ident)) == seen[0]
    with pytest.raises(ValueError, match="bad input"):
        torch_thread.run(lambda: (_ for _ in ()).throw(ValueError("bad input")))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_process_gets_a_thread_of_its_own():
    torch_thread = TorchThread()
    torch_thread.run(int)  # the parent's thread exists before the fork
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: without a thread of its own, this call would wait forever
        os.write(write, str(torch_thread.run(lambda: 42)).encode())
        os._exit(0)
    os.close(write)
    assert os.read(read, 16) == b"42"
    os.waitpid(pid, 0)
