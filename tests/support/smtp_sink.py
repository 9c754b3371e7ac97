"""A loopback SMTP server for the integration tests (aiosmtpd).

Usage: smtp_sink.py DIR [PORT]. Binds 127.0.0.1 on PORT (default: a free
one), prints the port on stdout, refuses the mailboxes `no-such-mailbox*@`
(550 5.1.1, unknown) and `mailbox-full*@` (552 5.2.2), and stores every
message it accepts as DIR/NNNN.eml (written to a temporary name, then
renamed, so readers never see half a message).
"""
import asyncio
import itertools
import os
import sys

from aiosmtpd.smtp import SMTP


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
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content or envelope.content)
        os.rename(path + ".tmp", path)
        return "250 OK"


async def main():
    loop = asyncio.get_running_loop()
    store = Store(sys.argv[1])  # one numbering for every connection
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = await loop.create_server(lambda: SMTP(store), "127.0.0.1", port)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
