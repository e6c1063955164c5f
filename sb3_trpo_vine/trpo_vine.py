"""TRPOVine: Trust Region Policy Optimization with single-path and vine sampling, as an SB3 on-policy algorithm."""

import copy
import inspect
import io
import pathlib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, BasePolicy, MultiInputActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule
from stable_baselines3.common.utils import FloatSchedule, explained_variance
from stable_baselines3.common.vec_env import VecEnv
from threadpoolctl import threadpool_limits
from torch import nn

from sb3_trpo_vine.buffers import (
    DictSinglePathRolloutBuffer,
    DictVineRolloutBuffer,
    DirectAddRolloutBuffer,
    SinglePathRolloutBuffer,
    VineObjectiveMixin,
    VineRolloutBuffer,
    single_path_objective,
)
from sb3_trpo_vine.critic import NumpyMlpCriticFit, fit_value_function
from sb3_trpo_vine.distributions import distribution_parameters, kl_divergence
from sb3_trpo_vine.finite import check_finite
from sb3_trpo_vine.sampling import make_sampler, policy_noise
from sb3_trpo_vine.snapshot import vec_check_snapshot_supported
from sb3_trpo_vine.surrogates import SurrogateObjective, subsample_observations
from sb3_trpo_vine.trust_region import FisherVectorProduct, TrustRegionStepInfo, trust_region_step
from sb3_trpo_vine.vine import VineCollector, vec_transforms

SelfTRPOVine = TypeVar("SelfTRPOVine", bound="TRPOVine")

DEFAULT_TOTAL_TIMESTEPS = 1_000_000
SUPPORTED_ACTION_SPACES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)
ROLLOUT_BUFFER_ALIASES: dict[str, tuple[type[RolloutBuffer], type[RolloutBuffer]]] = {
    "single_path": (SinglePathRolloutBuffer, DictSinglePathRolloutBuffer),
    "vine": (VineRolloutBuffer, DictVineRolloutBuffer),
}
DEFAULT_ROLLOUT_BUFFER = "single_path"
VINE_SETTINGS = {
    name
    for name, parameter in inspect.signature(VineObjectiveMixin.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
}


def resolve_rollout_buffer_class(
    rollout_buffer_class: str | type[RolloutBuffer] | None, observation_space: spaces.Space
) -> type[RolloutBuffer]:
    """
    Turn ``rollout_buffer_class`` (None, an alias such as ``"single_path"``, or a class) into a buffer class.

    :param rollout_buffer_class: what the user passed
    :param observation_space: picks the dict-observation variant of an alias
    :return: the buffer class
    """
    if rollout_buffer_class is None:
        rollout_buffer_class = DEFAULT_ROLLOUT_BUFFER
    if isinstance(rollout_buffer_class, str):
        if rollout_buffer_class not in ROLLOUT_BUFFER_ALIASES:
            raise ValueError(
                f"Unknown rollout_buffer_class {rollout_buffer_class!r}: use one of {sorted(ROLLOUT_BUFFER_ALIASES)} "
                "or a subclass of stable_baselines3.common.buffers.RolloutBuffer"
            )
        flat_class, dict_class = ROLLOUT_BUFFER_ALIASES[rollout_buffer_class]
        return dict_class if isinstance(observation_space, spaces.Dict) else flat_class
    if not (isinstance(rollout_buffer_class, type) and issubclass(rollout_buffer_class, RolloutBuffer)):
        raise ValueError(f"rollout_buffer_class must be a RolloutBuffer subclass or an alias, got {rollout_buffer_class!r}")
    return rollout_buffer_class


def actor_parameters(policy: ActorCriticPolicy) -> list[nn.Parameter]:
    """
    The parameters that influence the action distribution, found by autograd (not by parameter names).

    :param policy: the policy
    :return: the actor parameters theta, in ``policy.parameters()`` order
    """
    observation = policy.obs_to_tensor(policy.observation_space.sample())[0]
    params = list(policy.parameters())
    with th.enable_grad():
        outputs = distribution_parameters(policy.get_distribution(observation))
        gradients = th.autograd.grad(sum(output.sum() for output in outputs), params, allow_unused=True)
    return [param for param, gradient in zip(params, gradients, strict=True) if gradient is not None]


def _batch_of_one(observation: np.ndarray | dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]:
    if isinstance(observation, dict):
        return {key: np.expand_dims(value, 0) for key, value in observation.items()}
    return np.expand_dims(observation, 0)


class TRPOVine(OnPolicyAlgorithm):
    """
    Trust Region Policy Optimization (TRPO) with the paper's single-path and vine sampling schemes.

    Paper: https://arxiv.org/abs/1502.05477 (Schulman et al., 2015); critic and GAE as in
    https://arxiv.org/abs/1506.02438. Accepts every hyperparameter of ``sb3_contrib.TRPO`` with the same name,
    default and meaning, except that the KL is the paper's: the mean over states of the KL between the *full*
    action distributions (summed over action dimensions, not averaged as in sb3-contrib). An sb3-contrib
    ``target_kl`` and ``cg_damping`` on a d-dimensional Box equal ours multiplied by d.

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate for the value function, it can be a function
        of the current progress remaining (from 1 to 0)
    :param n_steps: The number of steps to run for each environment per update
        (i.e. rollout buffer size is n_steps * n_envs where n_envs is number of environment copies running in parallel)
    :param batch_size: Minibatch size for the value function updates
    :param gamma: Discount factor
    :param cg_max_steps: maximum number of steps in the Conjugate Gradient algorithm
        for computing the Hessian vector product
    :param cg_damping: damping added to the Fisher matrix in the Hessian vector product computation
    :param line_search_shrinking_factor: step-size reduction factor for the line-search
        (i.e., ``theta_new = theta + alpha^i * step``)
    :param line_search_max_iter: maximum number of iterations for the backtracking line-search
    :param n_critic_updates: number of critic updates per policy update
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use: a ``RolloutBuffer`` subclass, or one of the aliases
        ``"single_path"`` (``SinglePathRolloutBuffer``) and ``"vine"`` (``VineRolloutBuffer``). If ``None``, the
        single-path buffer is used (dict-observation variants are picked automatically): in the 1M-step study
        (docs/benchmarks.md, IQM final over seeds 10-19) vine with its zoo entries reaches 101% of single path on
        Hopper-v5 but 88% on Walker2d-v5, short of the 90% on both that would have made it the default.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation
    :param normalize_advantage: Whether to normalize or not the advantage
    :param target_kl: the trust-region radius delta: the mean KL(pi_old || pi_new) of an accepted step is at most
        ``target_kl`` (the paper's Eq. 12 KL, summed over action dimensions). It can be a function of the current
        progress remaining (from 1 to 0), like ``learning_rate``, e.g. a radius annealed to 0 over training; an update
        whose radius is 0 makes no policy step (the critic is still fitted)
    :param sub_sampling_factor: Sub-sample the batch to make computation faster (the whole policy step uses every
        k-th sample, as in sb3-contrib)
    :param fisher_sub_sampling_factor: compute only the Fisher-vector products on every k-th sample
        (the paper's Appendix C.1 uses 10%, i.e. 10); the gradient and line search use all samples
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: the verbosity level: 0 no output, 1 info, 2 debug
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": ActorCriticPolicy,
        "CnnPolicy": ActorCriticCnnPolicy,
        "MultiInputPolicy": MultiInputActorCriticPolicy,
    }
    policy: ActorCriticPolicy

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 1e-3,
        n_steps: int = 2048,
        batch_size: int = 128,
        gamma: float = 0.99,
        cg_max_steps: int = 15,
        cg_damping: float = 0.1,
        line_search_shrinking_factor: float = 0.8,
        line_search_max_iter: int = 10,
        n_critic_updates: int = 10,
        gae_lambda: float = 0.95,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: str | type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        normalize_advantage: bool = True,
        target_kl: float | Schedule = 0.01,
        sub_sampling_factor: int = 1,
        fisher_sub_sampling_factor: int = 1,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        _check_hyperparameters(
            n_steps=n_steps,
            batch_size=batch_size,
            gamma=gamma,
            gae_lambda=gae_lambda,
            cg_max_steps=cg_max_steps,
            cg_damping=cg_damping,
            line_search_shrinking_factor=line_search_shrinking_factor,
            line_search_max_iter=line_search_max_iter,
            n_critic_updates=n_critic_updates,
            target_kl=target_kl(1.0) if callable(target_kl) else target_kl,
            sub_sampling_factor=sub_sampling_factor,
            fisher_sub_sampling_factor=fisher_sub_sampling_factor,
        )
        try:
            super().__init__(
                policy,
                env,
                learning_rate=learning_rate,
                n_steps=n_steps,
                gamma=gamma,
                gae_lambda=gae_lambda,
                ent_coef=0.0,  # TRPO has no entropy bonus
                vf_coef=0.0,  # the critic is fitted separately
                max_grad_norm=0.0,
                use_sde=use_sde,
                sde_sample_freq=sde_sample_freq,
                rollout_buffer_class=rollout_buffer_class,  # type: ignore[arg-type]  # aliases resolved in _setup_model
                rollout_buffer_kwargs=rollout_buffer_kwargs,
                stats_window_size=stats_window_size,
                tensorboard_log=tensorboard_log,
                policy_kwargs=policy_kwargs,
                verbose=verbose,
                device=device,
                seed=seed,
                _init_setup_model=False,
                supported_action_spaces=SUPPORTED_ACTION_SPACES,
            )
        except AssertionError as error:
            if "action space" not in str(error):
                raise
            raise ValueError(
                f"TRPOVine supports Box, Discrete, MultiDiscrete and MultiBinary action spaces ({error}). "
                "Wrap the environment to expose one of them (e.g. gymnasium.wrappers.FlattenObservation-like "
                "action wrappers for Tuple/Dict actions)."
            ) from error

        self.batch_size = batch_size
        self.cg_max_steps = cg_max_steps
        self.cg_damping = cg_damping
        self.line_search_shrinking_factor = line_search_shrinking_factor
        self.line_search_max_iter = line_search_max_iter
        self.n_critic_updates = n_critic_updates
        self.normalize_advantage = normalize_advantage
        self.target_kl = target_kl
        self.sub_sampling_factor = sub_sampling_factor
        self.fisher_sub_sampling_factor = fisher_sub_sampling_factor

        if self.env is not None:
            rollout_size = self.env.num_envs * self.n_steps
            if normalize_advantage and rollout_size <= 1:
                raise ValueError(
                    f"n_steps * n_envs must be greater than 1 to normalize advantages, got {rollout_size}; "
                    "increase n_steps or pass normalize_advantage=False"
                )
            if batch_size > rollout_size:
                raise ValueError(
                    f"batch_size={batch_size} is larger than the rollout (n_steps * n_envs = {rollout_size}); "
                    "lower batch_size or raise n_steps"
                )

        if _init_setup_model:
            self._setup_model()
            # fail at construction, not at the first learn(), when vine cannot snapshot the env (a loaded model is
            # only checked when it learns: evaluating it needs no snapshots)
            if self.env is not None and issubclass(self.rollout_buffer_class, VineObjectiveMixin):
                self._check_vine_env(self.env)

    def _setup_model(self) -> None:
        self.rollout_buffer_class = resolve_rollout_buffer_class(self.rollout_buffer_class, self.observation_space)
        vine_settings = sorted(set(self.rollout_buffer_kwargs) & VINE_SETTINGS)
        if vine_settings and not issubclass(self.rollout_buffer_class, VineObjectiveMixin):
            raise ValueError(
                f"rollout_buffer_kwargs {vine_settings} are vine settings, but the rollout buffer is "
                f"{self.rollout_buffer_class.__name__} (single path is the default): pass rollout_buffer_class='vine'"
            )
        super()._setup_model()
        self._actor_params = actor_parameters(self.policy)
        actor_ids = {id(param) for param in self._actor_params}
        critic_params = [param for param in self.policy.parameters() if id(param) not in actor_ids]
        if not critic_params:
            raise ValueError("The policy has no value-function parameters apart from the actor's; TRPOVine needs a critic")
        # The critic is fitted separately: its optimizer only holds parameters that do not move the policy, so a
        # shared feature extractor (CnnPolicy) is changed by the trust-region step only.
        optimizer_kwargs = dict(self.policy.optimizer_kwargs)
        if self.policy.optimizer_class in (th.optim.Adam, th.optim.AdamW) and not {"fused", "foreach"} & set(optimizer_kwargs):
            optimizer_kwargs["fused"] = True  # same update, one kernel per tensor: the critic takes hundreds of steps
        self.policy.optimizer = self.policy.optimizer_class(critic_params, lr=self.lr_schedule(1), **optimizer_kwargs)
        self.target_kl_schedule = FloatSchedule(self.target_kl)
        self._sampler = make_sampler(self.policy)
        self._vine_collector: VineCollector | None = None

    @staticmethod
    def _check_vine_env(env: VecEnv) -> None:
        """Fail fast, with both fixes named, when vine sampling cannot snapshot the training env."""
        vec_transforms(env)
        vec_check_snapshot_supported(env)

    def _setup_learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> tuple[int, BaseCallback]:
        if issubclass(self.rollout_buffer_class, VineObjectiveMixin) and (
            self._vine_collector is None or self._vine_collector.env is not self.env
        ):
            assert self.env is not None
            self._check_vine_env(self.env)
            self._vine_collector = VineCollector(self.env, self.policy, self._sampler, self._env_actions, self.gamma)
        return super()._setup_learn(total_timesteps, *args, **kwargs)

    def set_random_seed(self, seed: int | None = None) -> None:
        """
        Seed torch, numpy, the action space and the policy-noise generator.

        :param seed: the seed
        """
        super().set_random_seed(seed)
        self._noise_rng = np.random.default_rng(seed)

    def _excluded_save_params(self) -> list[str]:
        excluded = ["_sampler", "_noise_rng", "_actor_params", "_vine_collector", "target_kl_schedule"]
        return [*super()._excluded_save_params(), *excluded]

    def _env_actions(self, actions: np.ndarray) -> np.ndarray:
        if isinstance(self.action_space, spaces.Box):
            if self.policy.squash_output:
                return self.policy.unscale_action(actions)
            return np.clip(actions, self.action_space.low, self.action_space.high)
        return actions

    def _bootstrap_truncated(self, rewards: np.ndarray, dones: np.ndarray, infos: list[dict[str, Any]]) -> None:
        # Partial-episode bootstrapping: a time-limit cut is not a termination, add gamma * V(s_T) to the reward
        for idx, done in enumerate(dones):
            if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated", False):
                terminal_value = self._sampler.predict_values(_batch_of_one(infos[idx]["terminal_observation"]))[0]
                rewards[idx] += self.gamma * terminal_value

    def collect_rollouts(
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: RolloutBuffer, n_rollout_steps: int
    ) -> bool:
        """
        Collect ``n_rollout_steps`` steps of every environment with the current policy into ``rollout_buffer``.

        Actions come from ``self._sampler`` fed with explicit noise from the seeded policy-noise generator.

        :param env: The training environment
        :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
        :param rollout_buffer: Buffer to fill with rollouts
        :param n_rollout_steps: Number of experiences to collect per environment
        :return: True if function returned with at least `n_rollout_steps` collected, False if callback terminated
            rollout prematurely.
        """
        assert self._last_obs is not None, "No previous observation was provided"
        first_timestep = self.num_timesteps
        self.policy.set_training_mode(False)
        self._sampler.refresh()
        n_steps = 0
        rollout_buffer.reset()
        if self.use_sde:
            self.policy.reset_noise(env.num_envs)

        vine = self._vine_collector if isinstance(rollout_buffer, VineObjectiveMixin) else None
        if vine is not None:
            vine.begin(rollout_buffer, n_rollout_steps, self._noise_rng)

        # the trunk's policy noise, drawn at once: one generator call instead of one per step
        trunk_noise = policy_noise(self._noise_rng, self.action_space, n_rollout_steps * env.num_envs)
        trunk_noise = trunk_noise.reshape(n_rollout_steps, env.num_envs, -1)

        direct_add = isinstance(rollout_buffer, DirectAddRolloutBuffer)
        callback.on_rollout_start()
        while n_steps < n_rollout_steps:
            if vine is not None:
                vine.record(n_steps, self._last_obs)  # type: ignore[arg-type]
            if self.use_sde and self.sde_sample_freq > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            actions, values, log_probs = self._sampler.sample(self._last_obs, trunk_noise[n_steps])  # type: ignore[arg-type]
            clipped_actions = self._env_actions(actions)
            new_obs, rewards, dones, infos = env.step(clipped_actions)
            self.num_timesteps += env.num_envs
            if vine is not None:
                vine.record_transition(n_steps, rewards, new_obs, dones, infos)  # type: ignore[arg-type]

            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            n_steps += 1

            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            self._bootstrap_truncated(rewards, dones, infos)
            if not direct_add:  # SB3's RolloutBuffer.add takes tensors
                values, log_probs = th.from_numpy(values), th.from_numpy(log_probs)
            rollout_buffer.add(
                self._last_obs,  # type: ignore[arg-type]
                actions,
                rewards,
                self._last_episode_starts,  # type: ignore[arg-type]
                values,
                log_probs,
            )
            self._last_obs = new_obs  # type: ignore[assignment]
            self._last_episode_starts = dones

        last_values = th.from_numpy(self._sampler.predict_values(new_obs))  # type: ignore[arg-type]
        self._check_trunk_finite(rollout_buffer, last_values.numpy(), first_timestep)
        rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=dones)
        check_finite(
            [("lambda-return", rollout_buffer.returns), ("advantage", rollout_buffer.advantages)],
            lambda index: (
                f"env {index[1]} at trunk step {index[0]} of the rollout that began at num_timesteps={first_timestep}"
            ),
        )
        if vine is not None:
            self._branch(vine, rollout_buffer, trunk_noise)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _check_trunk_finite(self, rollout_buffer: RolloutBuffer, last_values: np.ndarray, first_timestep: int) -> None:
        """
        Raise ``NonFiniteDataError`` before a NaN or inf in the trunk reaches the policy step or the critic.

        :param rollout_buffer: the filled trunk (observations as the policy saw them, i.e. after VecNormalize)
        :param last_values: V of the observations after the last trunk step
        :param first_timestep: ``num_timesteps`` when the rollout began
        """
        n_envs = rollout_buffer.n_envs

        def at_trunk_step(index: tuple[int, ...]) -> str:
            step, env = index[0], index[1] if len(index) > 1 else 0
            return (
                f"env {env} at trunk step {step} of the rollout that began at num_timesteps={first_timestep} "
                f"(the env's {step + 1}-th step of this rollout, num_timesteps={first_timestep + (step + 1) * n_envs})"
            )

        check_finite(
            [
                ("trunk observation (after the VecEnv wrappers, e.g. VecNormalize)", rollout_buffer.observations),
                ("trunk reward (after VecNormalize, time-limit bootstrap gamma * V(s_T) included)", rollout_buffer.rewards),
                ("critic value V(s)", rollout_buffer.values),
            ],
            at_trunk_step,
        )
        check_finite(
            [("critic value V(s) of the observation after the last trunk step", last_values.reshape(1, -1))],
            lambda index: f"env {index[1]} after the last trunk step (num_timesteps={self.num_timesteps})",
        )

    def _branch(self, vine: VineCollector, rollout_buffer: RolloutBuffer, trunk_noise: np.ndarray) -> None:
        """
        Run the vine branches after the trunk; branch simulator steps count towards ``num_timesteps``.

        :param vine: the collector that snapshotted the trunk
        :param rollout_buffer: the filled trunk
        :param trunk_noise: ``(n_steps, n_envs, noise_dim)`` the trunk's policy noise
        """
        with threadpool_limits(limits=1, user_api="blas"):  # batched branch forwards: see train()
            statistics = vine.branch(rollout_buffer, trunk_noise)  # type: ignore[arg-type]
        self.num_timesteps += statistics["branch_steps"]
        self.logger.record("vine/trunk_steps", trunk_noise.shape[0] * trunk_noise.shape[1])
        for key, value in statistics.items():
            self.logger.record(f"vine/{key}", value)

    def _policy_objective(self) -> tuple[SurrogateObjective, PyTorchObs, th.Tensor]:
        if hasattr(self.rollout_buffer, "policy_objective"):
            return self.rollout_buffer.policy_objective(self.normalize_advantage, self.sub_sampling_factor)
        return single_path_objective(self.rollout_buffer, self.normalize_advantage, self.sub_sampling_factor)

    def _policy_step(self, surrogate: SurrogateObjective) -> TrustRegionStepInfo:
        """
        Maximise the surrogate within the KL trust region (shared by every sampling scheme).

        :param surrogate: the surrogate objective on the collected batch
        :return: what the step did
        """
        policy = self.policy
        with th.no_grad():
            old_parameters = distribution_parameters(policy.get_distribution(surrogate.observations))

        def evaluate() -> tuple[th.Tensor, th.Tensor]:
            distribution = policy.get_distribution(surrogate.observations)
            new_parameters = distribution_parameters(distribution)
            return surrogate(distribution), kl_divergence(distribution, old_parameters, new_parameters).mean()

        fisher_observations = subsample_observations(surrogate.observations, self.fisher_sub_sampling_factor)
        fisher_distribution = policy.get_distribution(fisher_observations)
        fisher_vector_product = FisherVectorProduct(
            self._actor_params, fisher_distribution, distribution_parameters(fisher_distribution), self.cg_damping
        )
        return trust_region_step(
            self._actor_params,
            evaluate,
            fisher_vector_product,
            target_kl=self.target_kl_schedule(self._current_progress_remaining),
            cg_max_steps=self.cg_max_steps,
            line_search_shrinking_factor=self.line_search_shrinking_factor,
            line_search_max_iter=self.line_search_max_iter,
        )

    def _fit_value_function(self, observations: PyTorchObs, returns: th.Tensor) -> list[float]:
        """
        ``n_critic_updates`` epochs of minibatch regression of V(s) on the return targets.

        When the critic's feature extractor is not trained by the critic (a parameter-free ``FlattenExtractor``, or a
        feature extractor shared with the actor), its features are constant during the fit: they are computed once
        and only the critic's MLP and value head run per minibatch, in numpy for SB3's MLP critic with Adam
        (``NumpyMlpCriticFit``, the same regression).

        :param observations: critic inputs
        :param returns: return targets
        :return: the minibatch losses
        """
        policy = self.policy
        epochs, batch_size, optimizer = self.n_critic_updates, self.batch_size, policy.optimizer
        critic_ids = {id(param) for group in optimizer.param_groups for param in group["params"]}
        if any(id(param) in critic_ids for param in policy.vf_features_extractor.parameters()):
            return fit_value_function(policy.predict_values, observations, returns, optimizer, epochs, batch_size)
        with th.no_grad():
            preprocessed = preprocess_obs(observations, policy.observation_space, normalize_images=policy.normalize_images)
            features = policy.vf_features_extractor(preprocessed)
        numpy_fit = NumpyMlpCriticFit.from_policy(policy)
        if numpy_fit is not None:
            return numpy_fit.fit(features, returns, epochs, batch_size)

        def predict(features: th.Tensor) -> th.Tensor:
            return policy.value_net(policy.mlp_extractor.forward_critic(features))

        return fit_value_function(predict, features, returns, optimizer, epochs, batch_size)

    def _critic_fit_runs_alongside(self) -> bool:
        """
        Whether the critic regression runs in a second thread during the trust-region step.

        It does when the critic's inputs depend on no parameter (a parameter-free feature extractor) and the fit runs
        in numpy (``NumpyMlpCriticFit``): the two updates then share no parameter and no input that either changes,
        so running them together gives bit-identical results, and both spend their time in numpy/torch kernels that
        release the GIL. Otherwise (e.g. a feature extractor shared with the actor, whose features the critic reads
        after the policy step) they run one after the other.
        """
        parameter_free_inputs = next(self.policy.vf_features_extractor.parameters(), None) is None
        return parameter_free_inputs and NumpyMlpCriticFit.from_policy(self.policy) is not None

    def train(self) -> None:
        """Update the policy with one trust-region step and fit the critic on the current rollout buffer."""
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)

        # numpy's BLAS single-threaded: at these matrix sizes its threads only contend for the cores (the critic fit
        # measured 3x slower with two OpenBLAS threads next to one busy process on two cores)
        with threadpool_limits(limits=1, user_api="blas"):
            surrogate, critic_observations, critic_returns = self._policy_objective()
            check_finite(
                [("critic regression target", critic_returns.cpu().numpy())], lambda index: f"sample {index[0]} of the batch"
            )
            critic_before = CriticState(self.policy.optimizer)
            if self._critic_fit_runs_alongside():
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="critic-fit") as executor:
                    critic_fit = executor.submit(self._fit_value_function, critic_observations, critic_returns)
                    step = self._policy_step(surrogate)
                    value_losses = critic_fit.result()
            else:
                step = self._policy_step(surrogate)
                value_losses = self._fit_value_function(critic_observations, critic_returns)
        critic_skip_reason = critic_before.restore_if_non_finite(value_losses)

        self._n_updates += 1
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        self.logger.record("train/policy_objective", step.surrogate_after)
        self.logger.record("train/surrogate_improvement", step.surrogate_after - step.surrogate_before)
        self.logger.record("train/value_loss", float(np.mean(value_losses)) if value_losses else float("nan"))
        self.logger.record("train/kl_divergence_loss", step.kl)
        self.logger.record("train/target_kl", self.target_kl_schedule(self._current_progress_remaining))
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/is_line_search_success", float(step.accepted))
        self.logger.record("train/line_search_steps", step.line_search_steps)
        self.logger.record("train/step_size", step.step_size)
        self.logger.record("train/cg_residual", step.cg_residual)
        if step.skip_reason is not None:
            self.logger.record("train/skipped_update_reason", step.skip_reason, exclude=("csv", "json"))
            if self.verbose >= 1:
                print(f"TRPOVine: policy update {self._n_updates} skipped: {step.skip_reason}")
        if critic_skip_reason is not None:
            self.logger.record("train/critic_skipped_reason", critic_skip_reason, exclude=("csv", "json"))
            if self.verbose >= 1:
                print(f"TRPOVine: critic fit {self._n_updates} undone: {critic_skip_reason}")
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def learn(
        self: SelfTRPOVine,
        total_timesteps: int = DEFAULT_TOTAL_TIMESTEPS,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "TRPOVine",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfTRPOVine:
        """
        Train the model (SB3's ``learn``; ``total_timesteps`` defaults to ``DEFAULT_TOTAL_TIMESTEPS`` = 1M).

        :param total_timesteps: The total number of simulator steps to train on
        :param callback: callback(s) called at every step with state of the algorithm.
        :param log_interval: The number of iterations before logging.
        :param tb_log_name: the name of the run for TensorBoard logging
        :param reset_num_timesteps: whether or not to reset the current timestep number (used in logging)
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: the trained model
        """
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfTRPOVine],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfTRPOVine:
        """
        Load a saved TRPOVine model (SB3's ``load``), with a clear error for corrupt or foreign files.

        :param path: path to the file (or a file-like) where to load the agent from
        :param env: the new environment to run the loaded model on (can be None if you only need prediction)
        :param device: Device on which the code should run.
        :param custom_objects: Dictionary of objects to replace upon loading.
        :param print_system_info: Whether to print system info from the saved model
        :param force_reset: Force call to ``reset()`` before training to avoid unexpected behavior.
        :param kwargs: extra arguments to change the model when loading
        :return: new model instance with loaded parameters
        """
        try:
            data, _, _ = load_from_zip_file(path, device="cpu", custom_objects=custom_objects)
        except (zipfile.BadZipFile, ValueError, KeyError, EOFError, OSError, RuntimeError) as error:
            raise ValueError(
                f"Could not read a saved model from {path!r}: the file is not a valid SB3 zip ({error})"
            ) from error
        if data is None or "target_kl" not in data or "fisher_sub_sampling_factor" not in data:
            raise ValueError(
                f"{path!r} was not saved by TRPOVine (it lacks TRPOVine's hyperparameters); load it with the algorithm "
                "class that saved it, e.g. sb3_contrib.TRPO.load or stable_baselines3.PPO.load"
            )
        if hasattr(path, "seek"):
            path.seek(0)  # type: ignore[union-attr]
        try:
            return super().load(
                path,
                env=env,
                device=device,
                custom_objects=custom_objects,
                print_system_info=print_system_info,
                force_reset=force_reset,
                **kwargs,
            )
        except (RuntimeError, KeyError, zipfile.BadZipFile) as error:
            raise ValueError(
                f"Could not load the TRPOVine model from {path!r}: its parameters do not match the policy it describes "
                f"({error}). The file is corrupt or was saved with an incompatible policy or package version."
            ) from error


class CriticState:
    """
    The critic's parameters and optimizer state before a fit, restored if the fit produced a non-finite loss or
    parameter (the critic's counterpart of the trust-region step's skip on a non-finite surrogate).

    :param optimizer: the critic's optimizer (its parameter groups hold exactly the critic's parameters)
    """

    def __init__(self, optimizer: th.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.parameters = [param for group in optimizer.param_groups for param in group["params"]]
        self.saved_parameters = [param.detach().clone() for param in self.parameters]
        self.saved_optimizer_state = copy.deepcopy(optimizer.state_dict())

    def restore_if_non_finite(self, losses: list[float]) -> str | None:
        """
        :param losses: the fit's minibatch losses
        :return: why the fit was undone, None if it was kept
        """
        if np.isfinite(losses).all() and all(bool(th.isfinite(param).all()) for param in self.parameters):
            return None
        with th.no_grad():
            for param, saved in zip(self.parameters, self.saved_parameters, strict=True):
                param.copy_(saved)
        self.optimizer.load_state_dict(self.saved_optimizer_state)
        return "non-finite critic loss or parameters: critic and its optimizer restored to before the fit"


def _check_hyperparameters(**hyperparameters: float) -> None:
    """Raise a ``ValueError`` naming the fix for out-of-range hyperparameters."""
    rules = {
        "n_steps": (lambda v: v >= 1, "an integer >= 1"),
        "batch_size": (lambda v: v >= 1, "an integer >= 1"),
        "gamma": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "gae_lambda": (lambda v: 0.0 <= v <= 1.0, "in [0, 1]"),
        "cg_max_steps": (lambda v: v >= 1, "an integer >= 1"),
        "cg_damping": (lambda v: v >= 0.0, ">= 0"),
        "line_search_shrinking_factor": (lambda v: 0.0 < v < 1.0, "strictly between 0 and 1"),
        "line_search_max_iter": (lambda v: v >= 1, "an integer >= 1"),
        "n_critic_updates": (lambda v: v >= 0, "an integer >= 0"),
        "target_kl": (lambda v: v > 0.0, "> 0 (it is the trust-region radius delta; the paper uses 0.01)"),
        "sub_sampling_factor": (lambda v: v >= 1, "an integer >= 1"),
        "fisher_sub_sampling_factor": (lambda v: v >= 1, "an integer >= 1"),
    }
    for name, value in hyperparameters.items():
        is_valid, expected = rules[name]
        if not is_valid(value):
            raise ValueError(f"{name} must be {expected}, got {value!r}")
