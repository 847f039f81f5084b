"""grpolab's Hydra launcher plugins (Hydra only accepts launchers defined under `hydra_plugins`).

The code lives in `grpolab.sweeps.local` (local jobs, each in its own process) and `grpolab.sweeps.slurm`
(Slurm through submitit); the classes here only give it the module name Hydra requires, and the typed
schemas behind conf/hydra/launcher/*.yaml are registered here, when Hydra scans its plugins.
"""

from hydra.core.config_store import ConfigStore

from grpolab.sweeps import local, slurm


class LocalLauncher(local.LocalLauncher):
    """`hydra/launcher=local` (multirun default) and `local_parallel`: each job in its own process."""


class SlurmLauncher(slurm.SlurmLauncher):
    """`hydra/launcher=slurm`: one Slurm job per sweep job, resources from the hardware option."""


ConfigStore.instance().store(group="hydra/launcher", name="grpolab_local", node=local.LocalLauncherConf)
ConfigStore.instance().store(group="hydra/launcher", name="grpolab_slurm", node=slurm.SlurmLauncherConf)
