"""A server-sent events client for the live order status tests, on httpx-sse (a third-party client library).

Usage: python3 sse_client.py URL [LAST_EVENT_ID]

Prints one JSON line per event ({"id", "event", "data"}) as it arrives, then {"end": true} when the server ends
the stream (or {"error": "..."} when the request fails). Runs until the stream ends or it is killed.
"""

import json
import sys

import httpx
from httpx_sse import connect_sse


def main() -> int:
    url = sys.argv[1]
    headers = {}
    if len(sys.argv) > 2 and sys.argv[2]:
        headers["Last-Event-ID"] = sys.argv[2]
    try:
        with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
            with connect_sse(client, "GET", url, headers=headers) as source:
                if source.response.status_code != 200:
                    print(json.dumps({"error": f"status {source.response.status_code}"}), flush=True)
                    return 1
                for event in source.iter_sse():
                    print(json.dumps({"id": event.id, "event": event.event, "data": event.data}), flush=True)
    except httpx.HTTPError as err:
        print(json.dumps({"error": str(err)}), flush=True)
        return 1
    print(json.dumps({"end": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
