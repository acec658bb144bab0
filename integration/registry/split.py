"""A netsplit between an Elixir node and the other side (cnode, or a BEAM node in its place) for the :global
conflict tests."""
import harness


def cut_off(a, drv):
    """Disconnects a from the node in Process.get(:cn) on both and waits until both ends have dropped the
    connection; drv is a hidden node connected to the other side. Until the other side has seen the close, its own
    traffic (a lock call of its registrar, global's handshake) may still be on the way and bring the connection back
    at once (seen once with cnode: "up a@localhost (we connected)" just after the down; a BEAM node in its place has
    the same window): then the cut is made again rather than the registrations meeting across it. The cut counts once
    it holds after both global servers have worked through their queues."""
    # First, global's own locking must be over on both sides: a locker still finishing the last sync deletes its
    # lock on every node it locked, the one just cut off included, and that call dials it again (the BEAM's
    # gen_server:multi_call monitors, which auto-connects, just the same).
    free = ("r = :global.set_lock({:global, self()}, [Process.get(:cn)], 0); "
            "if r, do: :global.del_lock({:global, self()}, [Process.get(:cn)]); r")
    harness.wait_until(lambda: a.eval(":ets.lookup(:global_locks, :global)") == "[]" and drv.eval(free) == "true",
                       20, "global's lock to be free on both sides")
    assert a.eval("Node.disconnect(Process.get(:cn))") == "true"

    def cut():
        # Both global servers first handle what they had queued: a reply to a lock call that arrived before the cut
        # is sent after it and dials the node again (gen:reply auto-connects, on the BEAM too; seen with cnode under
        # ASan, where the server is slower to get to it).
        a.eval(":gen_server.call(:global_name_server, :get_known); :ok")
        drv.eval(":gen_server.call({:global_name_server, Process.get(:cn)}, :get_known); :ok")
        if a.eval("Node.list()") != "[]":
            a.eval("Node.disconnect(Process.get(:cn))")
            return False
        return drv.eval(":erpc.call(Process.get(:cn), :erlang, :nodes, [])") == "[]"

    harness.wait_until(cut, 10, "a and the other side to be cut off")
