"""Helpers of the TLS distribution tests (issue 17): test certificates made here with the openssl command line (a CA,
node certificates, an expired one, one for another host, one from a CA nobody trusts), erl -ssl_dist_optfile files,
and erl/elixir/cnode nodes that speak inet_tls_dist."""
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cnode"))
import harness  # noqa: E402
from cnode_node import start_cnode  # noqa: E402

_CA_CNF = """[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
email_in_dn = no
[any]
commonName = supplied
"""


def _openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed:\n{r.stdout}")


class Pki:
    """Certificates under dir. ca(name) makes a CA; cert(ca, name, host, ...) a node certificate (key in NAME.key,
    certificate in NAME.pem) for host (a DNS name, and unless ip=False 127.0.0.1 as an IP entry), usable as server
    and client."""

    def __init__(self, base):
        self.dir = os.path.join(base, "pki")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def ca(self, name):
        d = self.path(name + ".d")
        os.makedirs(d)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("1000\n")
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(_CA_CNF.format(dir=d))
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "3650", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 cwd=self.dir)
        return name

    def cert(self, ca, name, host="localhost", start=None, end=None, days=365, ip=True):
        ext = os.path.join(self.dir, name + ".ext")
        san = f"DNS:{host}" + (",IP:127.0.0.1" if ip else "")
        with open(ext, "w") as f:
            f.write(f"basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                    f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={san}\n")
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                 f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={host}", cwd=self.dir)
        when = ["-startdate", start, "-enddate", end] if start else ["-days", str(days)]
        _openssl("ca", "-batch", "-config", os.path.join(self.dir, ca + ".d", "ca.cnf"), "-cert", f"{ca}.pem",
                 "-keyfile", f"{ca}.key", "-in", f"{name}.csr", "-out", f"{name}.pem", "-extfile", ext, "-notext",
                 *when, cwd=self.dir)
        return name


def standard_pki(c):
    """The certificates every test here uses: node (localhost, trusted CA), other (the same CA: a second node),
    expired, wronghost, rogue (localhost, signed by a CA nobody trusts)."""
    p = Pki(c.tmp)
    p.ca("ca")
    p.ca("rogue_ca")
    p.cert("ca", "node")
    p.cert("ca", "other")
    p.cert("ca", "expired", start="20200101000000Z", end="20200201000000Z")
    p.cert("ca", "wronghost", host="wronghost.example", ip=False)
    p.cert("rogue_ca", "rogue")
    return p


def erl_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def optfile(c, name, server, client):
    """Writes an erl -ssl_dist_optfile file: server and client are lists of Erlang option texts."""
    path = os.path.join(c.tmp, name + ".conf")
    with open(path, "w") as f:
        f.write("%% written by the test\n[{server, [" + ", ".join(server) + "]},\n {client, [" + ", ".join(client)
                + "]}].\n")
    return path


def role_opts(pki, cert, ca="ca", verify=True, fail_if_no_peer_cert=None, versions=("tlsv1.3", "tlsv1.2"),
              extra=()):
    """Options for one role: cert (a Pki name, or None for no certificate), trusting `ca` when verifying."""
    o = []
    if cert:
        o += [f"{{certfile, {erl_string(pki.path(cert + '.pem'))}}}", f"{{keyfile, {erl_string(pki.path(cert + '.key'))}}}"]
    if ca:
        o.append(f"{{cacertfile, {erl_string(pki.path(ca + '.pem'))}}}")
    o.append("{verify, verify_peer}" if verify else "{verify, verify_none}")
    if fail_if_no_peer_cert is not None:
        o.append(f"{{fail_if_no_peer_cert, {str(fail_if_no_peer_cert).lower()}}}")
    if versions:
        o.append("{versions, [" + ", ".join(f"'{v}'" for v in versions) + "]}")
    return o + list(extra)


def beam_optfile(c, pki, name, cert="node", client_cert="node", ca="ca", **kw):
    """An optfile for a BEAM node: server and client with certificates, verifying peers, mutual authentication."""
    return optfile(c, name, role_opts(pki, cert, ca, fail_if_no_peer_cert=True, **kw),
                   role_opts(pki, client_cert, ca, **kw))


def tls_args(path):
    return ["-proto_dist", "inet_tls", "-ssl_dist_optfile", path]


def tls_erl(c, sname, path, **kw):
    return c.erl(sname, args=tls_args(path) + list(kw.pop("args", ())), **kw)


def tls_elixir(c, sname, path, **kw):
    return c.elixir(sname, args=["--erl", " ".join(tls_args(path))] + list(kw.pop("args", ())), **kw)


def cli_tls(pki, cert="node", ca="ca", extra=()):
    """cnode's --tls-* options for a certificate of pki."""
    return ["--tls-cert", pki.path(cert + ".pem"), "--tls-key", pki.path(cert + ".key"),
            "--tls-cacerts", pki.path(ca + ".pem")] + list(extra)


def tls_cnode(c, pki, cert="node", ca="ca", extra=(), **kw):
    return start_cnode(c, extra=cli_tls(pki, cert, ca) + list(extra), **kw)


def closed_by_peer(s, timeout):
    """True once the peer closes s (EOF or reset) within timeout seconds; whatever it sends first is read away."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            if s.recv(4096) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
    return False
