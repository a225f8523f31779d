"""memkube_operator: a kopf operator reconciling ``WorkerPool`` objects (memkube.dev/v1alpha1).

Modules, from pure to I/O::

    quantity, crd, spec, translate, naming   parse and validate a WorkerPool (no I/O)
    builders/                                Secret, scheduler Pod+Service, worker Pods
    status, plan                             status derivation and the reconcile plan
    kube, scheduler_api                      the only modules that talk to a network
    reconcile, scaledown                     carry out one plan step for one pool
    handlers, cli                            kopf registration and ``memkube operator``

It talks to the runtime only over the scheduler's HTTP API and the worker/scheduler CLI.
"""
