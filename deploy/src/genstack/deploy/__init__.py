"""genstack.deploy: genstack without Compose — `make up` and the RunPod pod image.

- ``services``: the one description of the services (:data:`ROLES`, compose.yaml's) and the
  plan of one host made from it (:func:`make_plan`: engines, one server + worker per GPU,
  ports, environment, what is missing);
- ``supervisord``: supervisord.conf rendered from a plan;
- ``runtime``: the data folder, the generated API key, the pod's folders (STORAGE_MODE) and
  SSH, then the exec into supervisord;
- ``health``: the description's health checks (HTTP, Redis PING, TCP);
- ``monitor``: the program that says when the stack is ready and which service gave up;
- ``settings``: DeploySettings (ENABLE_XTTS, DATA_DIR, ...);
- ``cli``: ``genstack-deploy up | pod | config | envs | health | monitor``.
"""
