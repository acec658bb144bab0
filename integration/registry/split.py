"""A netsplit between an Elixir node and the other side (cnode, or a BEAM node in its place) for the :global
conflict tests."""
import harness


def cut_off(a, drv):
    """Disconnects a from the node in Process.get(:cn) on both and waits until both ends have dropped the
    connection; drv is a hidden node connected to the other side. Until the other side has seen the close, its own
    traffic (a lock call of its registrar, global's handshake) may still be on the way and bring the connection back
    at once (seen once with cnode: "up a@localhost (we connected)" just after the down; a BEAM node in its place has
    the same window): then the cut is made again rather than the registrations meeting across it."""
    assert a.eval("Node.disconnect(Process.get(:cn))") == "true"

    def cut():
        if a.eval("Node.list()") != "[]":
            a.eval("Node.disconnect(Process.get(:cn))")
            return False
        return drv.eval(":erpc.call(Process.get(:cn), :erlang, :nodes, [])") == "[]"

    harness.wait_until(cut, 10, "a and the other side to be cut off")
