"""Send a message to a local SMTP server with coserve.smtp, as blocking-style code.

    python examples/send_mail.py HOST PORT

The message is built with the standard library's EmailMessage (never by hand);
its envelope comes from the From, To, Cc and Bcc headers, and Bcc is not sent.
One recipient (``nobody@...``) may be refused by the server: the others still
get the message, and the refusal is printed. STARTTLS is used if the server
offers it; no credentials are given, so nothing would go in clear.
"""

from __future__ import annotations

import sys
from email.message import EmailMessage

import coserve
from coserve import smtp


def build() -> EmailMessage:
    m = EmailMessage()
    m["From"] = "Ada <ada@example.org>"
    m["To"] = "Charles <charles@example.org>, refuse-nobody@example.org"
    m["Bcc"] = "archive@example.org"
    m["Subject"] = "Notes on the Analytical Engine"
    m.set_content("The engine weaves algebraic patterns\njust as the Jacquard loom weaves flowers.\n")
    m.add_attachment(b"\x00\x01 table of Bernoulli numbers", maintype="application", subtype="octet-stream",
                     filename="note-g.bin")  # fmt: skip
    return m


async def main(host: str, port: int) -> None:
    try:
        refused = await smtp.send(build(), host=host, port=port, timeout=10)
    except smtp.SMTPError as e:
        print(f"not sent: {type(e).__name__}: {e}")
        return
    print("sent")
    for address, (code, text) in refused.items():
        print(f"refused {address}: {code} {text}")


if __name__ == "__main__":
    coserve.run(main, sys.argv[1], int(sys.argv[2]))
