"""A loopback SMTP server for the integration tests (aiosmtpd).

Usage: smtp_sink.py DIR [PORT] [--starttls CERT KEY | --tls CERT KEY]
[--login USER PASSWORD]. Binds 127.0.0.1 on PORT (default: a free one),
prints the port on stdout, refuses the mailboxes `no-such-mailbox*@`
(550 5.1.1, unknown) and `mailbox-full*@` (552 5.2.2), and stores every
message it accepts as DIR/NNNN.eml (written to a temporary name, then
renamed, so readers never see half a message), headed by the envelope's
recipients, the TLS version it came over (`none` in clear), the login it
came with and the name the client gave in EHLO.

`--starttls` requires STARTTLS before MAIL (as a submission port does),
`--tls` speaks TLS from the first byte (as port 465 does); `--login` then
requires AUTH with that user and password (over TLS when there is TLS).
"""
import asyncio
import itertools
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Store:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        # Two mailboxes answer as a real relay would: one that does not
        # exist (refused for good) and one that is full (may clear later).
        local = address.split("@")[0]
        if local.startswith("no-such-mailbox"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("mailbox-full"):
            return f"552 5.2.2 <{address}>: Mailbox full"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        path = os.path.join(self.directory, f"{next(self.counter):04d}.eml")
        tls = server.transport.get_extra_info("ssl_object")
        login = (session.login_data or b"").decode()
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(f"X-Sink-TLS: {tls.version() if tls else 'none'}\r\n".encode())
            f.write(f"X-Sink-Login: {login}\r\n".encode())
            f.write(f"X-Sink-Helo: {session.host_name}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 OK"


def option(args, name, count):
    """The `count` values after `--name`, or None."""
    if name not in args:
        return None
    at = args.index(name)
    return args[at + 1:at + 1 + count]


async def main():
    loop = asyncio.get_running_loop()
    args = sys.argv[1:]
    store = Store(args[0])  # one numbering for every connection
    port = int(args[1]) if len(args) > 1 and args[1].isdigit() else 0
    starttls, implicit, login = option(args, "--starttls", 2), option(args, "--tls", 2), option(args, "--login", 2)
    context = None
    if starttls or implicit:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*(starttls or implicit))
    smtp = {"require_starttls": bool(starttls), "tls_context": context if starttls else None}
    if login:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = isinstance(auth_data, LoginPassword) and (
                auth_data.login.decode(), auth_data.password.decode()) == tuple(login)
            # handled=False: aiosmtpd answers a refusal with its 535 itself.
            return AuthResult(success=ok, handled=False, auth_data=auth_data)
        # aiosmtpd sees TLS only once STARTTLS ran: over --tls it is there from the start.
        smtp.update(authenticator=authenticator, auth_required=True, auth_require_tls=not implicit)
    server = await loop.create_server(
        lambda: SMTP(store, **smtp), "127.0.0.1", port, ssl=context if implicit else None)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
