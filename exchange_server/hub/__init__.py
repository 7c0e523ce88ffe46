"""The exchange server as a province hub: prefectures deliver to it, the province approves and forwards to HQ.

One software, three places (docs/tiers.md). With ``hub_party`` set the server serves one
province: its org tree is that province (``OrgService.sync_from_spec`` scope), HQ's calendar,
list and code lists come down from the upstream (``sync``), the province approves each local
network's data per cycle (``approval``), approved versions are assembled into a delivery for
HQ (``forward``) and sent by the forwarder (``forwarder``), and HQ's answers are mapped back
to the prefecture files their rows came from (``answers``).
"""
