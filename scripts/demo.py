#!/usr/bin/env python3
"""Drive a running omniroute by hand: publish one sample contact and print
what the router publishes back (offers, contact events, SLA alerts).

Without --accept nobody answers: the offer expires and is re-offered, the SLA
warnings and the breach arrive, and when the listening time is over the demo
customer leaves (an `end` event), so no demo contact lingers in the queue.
With --accept the demo first sets agent a-017 available (an earlier run may
have set it away for letting offers expire), accepts the offer, and completes
the contact when the listening time is over, which frees the agent's slot.

    scripts/run.sh                                 # in one terminal
    python3 scripts/demo.py --accept --respond     # in another

The NATS URL is --url, else $NATS_URL, else the one scripts/run.sh wrote to
.data/nats.url, else nats://127.0.0.1:4222. Needs the nats-py package; when
it is missing the script installs it into .tools/py (git-ignored).
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY_TOOLS = ROOT / ".tools" / "py"
NATS_PY = "nats-py==2.16.0"


def import_nats():
    """Import nats-py, installing it into .tools/py first if needed."""
    if PY_TOOLS.is_dir():
        sys.path.insert(0, str(PY_TOOLS))
    try:
        import nats  # noqa: F401
    except ImportError:
        print(f"demo.py: installing {NATS_PY} into {PY_TOOLS.relative_to(ROOT)} ...", file=sys.stderr)
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--target", str(PY_TOOLS), NATS_PY]
        env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore")
        if subprocess.call(cmd, env=env) != 0:
            sys.exit(f"demo.py: could not install nats-py; try: python3 -m pip install --target .tools/py {NATS_PY}")
        if str(PY_TOOLS) not in sys.path:
            sys.path.insert(0, str(PY_TOOLS))
    import nats
    return nats


def default_url():
    if os.environ.get("NATS_URL"):
        return os.environ["NATS_URL"]
    url_file = ROOT / ".data" / "nats.url"
    if url_file.is_file() and url_file.read_text().strip():
        return url_file.read_text().strip()
    return "nats://127.0.0.1:4222"


def now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(kind):
    return f"demo-{kind}-{uuid.uuid4().hex}"


def show(subject, data):
    try:
        body = json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except (ValueError, UnicodeDecodeError):
        body = data.decode("utf-8", "replace")
    print(f"\n<-- {subject}\n{body}", flush=True)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=default_url(), help="NATS URL (default: %(default)s)")
    ap.add_argument("--prefix", default="omni", help="subject prefix (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=90, help="how long to listen (default: %(default)s)")
    ap.add_argument("--available", metavar="AGENT_ID", action="append", default=[],
                    help="first publish presence=available for this agent (repeatable)")
    ap.add_argument("--channel", default="chat", choices=["email", "chat", "social", "voice"],
                    help="channel of the sample contact (default: %(default)s; chat has a 30 s VIP SLA "
                         "in config/omniroute.toml, so a warning and a breach show within the demo)")
    ap.add_argument("--accept", action="store_true",
                    help="accept the offer made for the sample contact (sets a-017 available first "
                         "unless --available names agents)")
    ap.add_argument("--respond", action="store_true", help="after accepting, publish a respond event")
    args = ap.parse_args()
    p = args.prefix

    nats = import_nats()
    connected = False

    async def on_error(e):  # one line instead of nats-py's traceback
        if connected:
            print(f"nats: {e!r}", file=sys.stderr, flush=True)

    try:
        nc = await nats.connect(args.url, name="omniroute-demo", connect_timeout=5,
                                max_reconnect_attempts=3, error_cb=on_error)
        connected = True
    except Exception as e:  # noqa: BLE001 - any connect failure ends the demo
        sys.exit(f"demo.py: cannot connect to {args.url}: {e!r}\n(is scripts/run.sh running?)")
    js = nc.jetstream()
    print(f"connected to {args.url}", flush=True)

    async def publish(subject, payload):
        """Publish through JetStream so a missing stream is reported, not silent."""
        data = json.dumps(payload).encode()
        try:
            ack = await js.publish(subject, data, headers={"Nats-Msg-Id": payload["id"]})
        except Exception as e:  # noqa: BLE001
            print(f"demo.py: publish to {subject} failed: {e!r}\n"
                  "(no JetStream stream for it? omniroute creates its streams at start-up)",
                  file=sys.stderr, flush=True)
            return False
        print(f"\n--> {subject}  (stream {ack.stream}, seq {ack.seq})\n{json.dumps(payload, indent=2)}",
              flush=True)
        return True

    def agent_event(agent_id, etype, **fields):
        return {"v": 1, "id": new_id(etype), "type": etype, "agent_id": agent_id, "at": now(), **fields}

    conversation_id = f"demo:{uuid.uuid4().hex}"
    accepted = {}  # contact id -> agent id

    async def on_message(msg):
        show(msg.subject, msg.data)
        if not args.accept or not msg.subject.startswith(f"{p}.offer."):
            return
        try:
            offer = json.loads(msg.data)
        except ValueError:
            return
        if offer.get("kind") != "offer" or offer.get("conversation_id") != conversation_id:
            return
        agent, contact = offer["agent_id"], offer["contact_id"]
        if contact in accepted:
            return
        accepted[contact] = agent
        ok = await publish(f"{p}.agent.{agent}.accept", agent_event(agent, "accept", contact_id=contact))
        if ok and args.respond:
            await publish(f"{p}.agent.{agent}.respond", agent_event(agent, "respond", contact_id=contact))

    for subject in (f"{p}.offer.>", f"{p}.alert.>", f"{p}.event.>"):
        await nc.subscribe(subject, cb=on_message)

    if args.accept and not args.available:
        args.available = ["a-017"]
    for agent in args.available:
        if not await publish(f"{p}.agent.{agent}.presence", agent_event(agent, "presence", status="available")):
            await nc.close()
            sys.exit(1)

    contact = {
        "v": 1,
        "id": new_id(args.channel),
        "type": "message",
        "channel": args.channel,
        "conversation_id": conversation_id,
        "received_at": now(),
        "customer": {"id": "cust-demo-0042", "name": "Ana Ruiz", "tier": "vip",
                     "address": "ana@example.com", "language": "es"},
        "subject": "Refund for invoice 7",
        "text": "Hello, I was charged twice for invoice 7. Can you refund one of the charges?",
        "skills": ["billing"],
        "source": {"adapter": "demo.py"},
    }
    if not await publish(f"{p}.inbound.{args.channel}", contact):
        await nc.close()
        sys.exit(1)

    print(f"\nlistening on {p}.offer.>, {p}.alert.>, {p}.event.> for {args.seconds:g} s (Ctrl-C stops)",
          flush=True)
    try:
        await asyncio.sleep(args.seconds)
        # Leave nothing behind: the demo agent completes what it took, or
        # the demo customer gives up, so the next run starts clean.
        for contact_id, agent in accepted.items():
            await publish(f"{p}.agent.{agent}.complete",
                          agent_event(agent, "complete", contact_id=contact_id, wrap_up_secs=0))
        if not accepted:
            customer_left = {key: value for key, value in contact.items() if key not in ("subject", "text", "skills")}
            await publish(f"{p}.inbound.{args.channel}",
                          {**customer_left, "id": new_id(args.channel), "type": "end", "received_at": now()})
        await asyncio.sleep(1)  # a moment to print the completed or abandoned event
    finally:
        await nc.drain()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("\nbye", file=sys.stderr)
