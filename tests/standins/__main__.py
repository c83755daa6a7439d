"""`make standins`: run the Hub and Runware stand-ins until Ctrl-C, for trying `make publish` offline."""

import secrets
import time

from tests.standins import HubStandIn, RunwareStandIn


def main() -> None:
    hf_token, runware_key = f"hf_standin_{secrets.token_hex(8)}", f"rw_standin_{secrets.token_hex(8)}"
    with HubStandIn(hf_token) as hub, RunwareStandIn(runware_key) as runware:
        print("Stand-ins for the Hugging Face Hub and Runware are running on 127.0.0.1 (fake tokens, nothing leaves"
              " this machine). In another shell, from the project folder:\n")
        print(f"  export HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1 HF_TOKEN={hf_token} HF_REPO_ID={hub.user}/bramble-lora")
        print(f"  export RUNWARE_URL={runware.url} RUNWARE_API_KEY={runware_key}")
        print("  make publish\n\nCtrl-C stops them (what they received is forgotten).", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("\nstand-ins stopped.")


if __name__ == "__main__":
    main()
