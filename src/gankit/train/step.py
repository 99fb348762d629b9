"""The training step: an objective, regularisers, constraints and a schedule, as one object.

:class:`GANStep` is what :class:`~gankit.Trainer` runs for every real batch. It owns the
*arithmetic* of a step and nothing else: which latents are drawn, which networks are
called on what, which losses are summed, which optimizer steps. Everything about *how*
it runs -- precision, autocast, gradient scaling, channels-last, ``torch.compile``, DDP,
CUDA graphs -- belongs to the trainer's engine and is reached through the
:class:`StepContext` and the trainer's primitives (:meth:`~gankit.Trainer.latents`,
:meth:`~gankit.Trainer.generate`, :meth:`~gankit.Trainer.score`,
:meth:`~gankit.Trainer.optimize`), so a step written by a user keeps every engine feature.

The seams, from the smallest change to the largest:

* pass another ``objective`` (any :class:`~gankit.losses.AdversarialLoss`), more
  ``regularizers`` or ``constraints``, a ``schedule`` (:class:`StepSchedule`) or
  ``accumulate`` (gradient accumulation over micro-batches);
* subclass and override :meth:`GANStep.d_loss` / :meth:`GANStep.g_loss` (the loss of one
  micro-batch, with its logged values);
* subclass and override :meth:`GANStep.train_discriminator` /
  :meth:`GANStep.train_generator` (one whole update of one network).

The report's two procedures are two configurations: task one is ``GANStep(bce)``, task
two ``GANStep(wasserstein, constraints=[WeightClip(0.01)], schedule=StepSchedule(n_critic=5))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..augment import Augmentation
from ..errors import ConfigError
from ..losses import AdversarialLoss, get_loss
from ..regularizers import Constraint, Regularizer
from .batch import Batch

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["StepSchedule", "StepContext", "GANStep", "ACGANStep"]


@dataclass(frozen=True)
class StepSchedule:
    """When the generator steps, relative to the discriminator.

    Args:
        n_critic: discriminator steps per generator phase.
        count: ``"epoch"``: the generator steps after real batch ``i`` of an epoch when
            ``(i + 1) % n_critic == 0`` (SPEC.md's task-two rule: the count restarts every
            epoch, so an epoch of fewer than ``n_critic`` batches has no generator step);
            ``"global"``: the same over the discriminator steps of the whole run.
        order: ``"d_first"`` (the report's) or ``"g_first"``: within a batch, the generator
            phase runs before the discriminator step.
        g_steps: generator updates in each generator phase (fresh latents each).

    Example:
        >>> s = StepSchedule(n_critic=5, count="global")
        >>> [s.generator_phase(batch_index=i % 4, d_steps=i) for i in range(10)].count(True)
        2
    """

    n_critic: int = 1
    count: str = "epoch"
    order: str = "d_first"
    g_steps: int = 1

    def __post_init__(self) -> None:
        for name in ("n_critic", "g_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
        if self.count not in ("epoch", "global"):
            raise ConfigError(f"count must be 'epoch' or 'global', got {self.count!r}.")
        if self.order not in ("d_first", "g_first"):
            raise ConfigError(f"order must be 'd_first' or 'g_first', got {self.order!r}.")

    def generator_phase(self, *, batch_index: int, d_steps: int) -> bool:
        """Whether the generator steps with this batch.

        Args:
            batch_index: index of the batch within its epoch.
            d_steps: discriminator steps before this batch, over the whole run.
        """
        i = batch_index if self.count == "epoch" else d_steps
        return (i + 1) % self.n_critic == 0


@dataclass
class StepContext:
    """What a loss or a regulariser sees of the current (micro-)batch.

    Attributes:
        trainer: the trainer (its networks, settings, counters).
        side: ``"d"`` or ``"g"``: whose loss is being computed.
        real: real images of the micro-batch.
        labels: their labels, or None.
        z: the latents of the micro-batch.
        fake_labels: the classes the fakes were generated for (None for an unconditional
            generator; the real batch's labels by default, see ``GANStep(fake_labels=...)``).
        fake: generated images (detached in the discriminator step).
        real_out: discriminator outputs on ``real`` (None in a generator step whose
            objective does not use them).
        fake_out: discriminator outputs on ``fake``.
        logs: values logged so far in this step (add your own: they are logged by name).
    """

    trainer: Trainer
    side: str
    real: Tensor
    labels: Tensor | None
    z: Tensor
    fake: Tensor | None = None
    real_out: Tensor | None = None
    fake_out: Tensor | None = None
    logs: dict[str, Tensor] = field(default_factory=dict)
    fake_labels: Tensor | None = None

    def score(self, x: Tensor, *, labels: Tensor | None = None, augment: bool = True) -> Tensor:
        """The discriminator's scores of ``x`` through the engine (as the objective wants them).

        A discriminator that scores images given their class (``takes_labels``: a projection
        head) receives ``labels``; by default :attr:`fake_labels` when ``x`` is :attr:`fake`
        and :attr:`labels` otherwise (real images, and the interpolations or perturbed
        copies a regulariser scores; with the default ``fake_labels="real"`` both are the
        same). An unconditional discriminator never receives labels.

        Args:
            x: images.
            labels: their classes (see above for the default).
            augment: apply the step's input augmentation first (the default), as every
                discriminator call of the step does.
        """
        t = self.trainer
        if not getattr(t, "discriminator_takes_labels", False):
            labels = None
        elif labels is None:
            labels = self.fake_labels if (x is self.fake and self.fake_labels is not None) else self.labels
        extra = {} if labels is None else {"labels": labels}  # an engine without labels keeps working
        return t.score(x, generator_step=self.side == "g", augment=augment, **extra)


class GANStep:
    """One training step: the discriminator update, then (on schedule) the generator's.

    Args:
        objective: the adversarial loss (a name or an :class:`~gankit.losses.AdversarialLoss`).
        regularizers: loss terms (:class:`~gankit.regularizers.Regularizer`), each logged.
        constraints: weight constraints (:class:`~gankit.regularizers.Constraint`).
        schedule: when the generator steps (:class:`StepSchedule`).
        accumulate: split every batch into this many micro-batches; gradients are summed
            (each micro-batch loss divided by ``accumulate``) before one optimizer step.
        augment: the discriminator's input augmentation (an
            :class:`~gankit.augment.Augmentation`: :class:`~gankit.augment.DiffAugment`,
            :class:`~gankit.augment.ADA`), applied by :meth:`~gankit.Trainer.score` to real
            and fake images in both steps; it sees the real scores of every discriminator
            step (:meth:`~gankit.augment.Augmentation.observe`), is told of every
            discriminator update (:meth:`~gankit.augment.Augmentation.update`, whose values
            are logged) and is checkpointed with the step. None: no augmentation.
        fake_labels: for a class-conditional generator, the classes the fakes of a step are
            generated for: ``"real"`` (the default: the labels of the real batch, so fakes
            and reals have the same classes and every discriminator call of the step sees
            one set of labels) or ``"uniform"`` (drawn uniformly with ``torch.randint`` on
            the global CPU generator, after the latents, as torch-mimicry and BigGAN do).

    Example:
        >>> from gankit.regularizers import R1Penalty
        >>> step = GANStep("hinge", regularizers=[R1Penalty(gamma=1.0, every=16)])
        >>> step.objective.name, [r.name for r in step.regularizers]
        ('hinge', ['r1'])
    """

    def __init__(
        self,
        objective: str | AdversarialLoss = "bce",
        *,
        regularizers: Sequence[Regularizer] = (),
        constraints: Sequence[Constraint] = (),
        schedule: StepSchedule | None = None,
        accumulate: int = 1,
        augment: Augmentation | None = None,
        fake_labels: str = "real",
    ) -> None:
        self.objective = get_loss(objective)
        if fake_labels not in ("real", "uniform"):
            raise ConfigError(f"fake_labels must be 'real' or 'uniform', got {fake_labels!r}.")
        self.fake_labels = fake_labels
        if augment is not None and not isinstance(augment, Augmentation):
            raise ConfigError(f"augment must be a gankit.augment.Augmentation (DiffAugment, ADA), got "
                              f"{type(augment).__name__}; wrap your function in an Augmentation subclass.")
        self.augment = augment
        self.regularizers = list(regularizers)
        self.constraints = list(constraints)
        self.schedule = schedule or StepSchedule()
        if isinstance(accumulate, bool) or not isinstance(accumulate, int) or accumulate < 1:
            raise ConfigError(f"accumulate must be a positive integer, got {accumulate!r}.")
        self.accumulate = accumulate
        names = [r.name for r in self.regularizers]
        if len(set(names)) != len(names):
            raise ConfigError(f"regulariser names must be unique, got {names}; give each its own name.")
        self.trainer: Trainer | None = None
        self.d_updates = 0  # discriminator / generator optimizer steps so far (lazy intervals)
        self.g_updates = 0

    # ------------------------------------------------------------------ engine binding

    def bind(self, trainer: Trainer) -> None:
        """Attach the step to its trainer (called by the trainer; applies constraints' setup)."""
        self.trainer = trainer
        for c in self.constraints:
            c.setup(trainer.discriminator if c.side == "d" else trainer.generator)

    def terms(self, side: str) -> list[Regularizer]:
        """The regularisers of one side."""
        return [r for r in self.regularizers if r.side == side]

    # ------------------------------------------------------------------ the step

    def __call__(self, batch: Batch, *, generator_phase: bool) -> dict[str, Tensor | None]:
        """Run one step on ``batch``; returns the logged values (0-d tensors)."""
        t = self._engine()
        if getattr(t, "num_classes", 0) and batch.labels is None:
            raise ConfigError(f"the recipe is class-conditional ({t.num_classes} classes) but the data has no "
                              "labels; train on labelled data (class sub-folders with imagefolder:PATH, a "
                              "dataset loaded with labels=True, or (images, labels) batches).")
        logs: dict[str, Tensor | None] = {}
        g_first = self.schedule.order == "g_first"
        if generator_phase and g_first:
            self._generator_phase(batch, logs)
        logs.update(self.train_discriminator(batch))
        if generator_phase and not g_first:
            self._generator_phase(batch, logs)
        logs.setdefault("loss_g", None)
        return logs

    def _generator_phase(self, batch: Batch, logs: dict[str, Tensor | None]) -> None:
        for _ in range(self.schedule.g_steps):
            logs.update(self.train_generator(batch))

    def train_discriminator(self, batch: Batch) -> dict[str, Tensor]:
        """One discriminator update on ``batch``: fresh latents, fakes without a graph,
        real then fake scored, the objective plus the due regularisers, one optimizer step,
        then the constraints.

        Returns:
            ``loss_d``, ``d_real``, ``d_fake`` and every regulariser's value by name.
        """
        t = self._engine()
        z_all = t.latents(len(batch))
        y_all = self.draw_fake_labels(batch)
        due = [r for r in self.terms("d") if r.due(self.d_updates)]
        logs: dict[str, Tensor] = {}
        with t.optimize("d") as opt:
            for mb, z, y in self._micro(batch, z_all, y_all):
                with torch.no_grad():  # the fakes are detached anyway: no graph for G
                    fake = t.generate(z, y)
                ctx = StepContext(t, "d", mb.images, mb.labels, z, fake, fake_labels=y)
                loss, values = self.d_loss(ctx)
                if self.augment is not None and ctx.real_out is not None:
                    self.augment.observe(t.logit_output(ctx.real_out))
                self._backward(opt, ctx, loss, values, due, logs, "loss_d")
        self.d_updates += 1
        for c in self.constraints:
            if c.side == "d":
                c.after_step(t.discriminator)
        if self.augment is not None:
            logs.update(self.augment.update(t))
        return logs

    def d_loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective's discriminator loss on one micro-batch (real scored first).

        Returns:
            ``(loss, logged values)``; ``ctx.real_out`` / ``ctx.fake_out`` are set.
        """
        ctx.real_out = ctx.score(ctx.real)
        ctx.fake_out = ctx.score(ctx.fake)
        loss = ctx.trainer.objective.d_loss(ctx.real_out, ctx.fake_out)
        t = ctx.trainer
        return loss, {"d_real": t.mean_output(ctx.real_out), "d_fake": t.mean_output(ctx.fake_out)}

    def train_generator(self, batch: Batch) -> dict[str, Tensor]:
        """One generator update: fresh latents, scored by the discriminator (whose own
        gradients are not computed), the objective plus the due G regularisers, one step.

        Returns:
            ``loss_g`` and every generator regulariser's value by name.
        """
        t = self._engine()
        z_all = t.latents(len(batch))
        y_all = self.draw_fake_labels(batch)
        due = [r for r in self.terms("g") if r.due(self.g_updates)]
        logs: dict[str, Tensor] = {}
        with t.optimize("g") as opt, t.frozen_discriminator():
            for mb, z, y in self._micro(batch, z_all, y_all):
                ctx = StepContext(t, "g", mb.images, mb.labels, z, t.generate(z, y), fake_labels=y)
                loss, values = self.g_loss(ctx)
                self._backward(opt, ctx, loss, values, due, logs, "loss_g")
        self.g_updates += 1
        for c in self.constraints:
            if c.side == "g":
                c.after_step(t.generator)
        return logs

    def g_loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective's generator loss on one micro-batch (real scores when it uses them)."""
        objective = ctx.trainer.objective
        if objective.g_uses_real:
            ctx.real_out = ctx.score(ctx.real)
        ctx.fake_out = ctx.score(ctx.fake)
        return objective.generator_loss(ctx.fake_out, ctx.real_out), {}

    # ------------------------------------------------------------------ helpers

    def _backward(self, opt, ctx: StepContext, loss: Tensor, values: dict[str, Tensor],
                  due: list[Regularizer], logs: dict[str, Tensor], key: str) -> None:
        """Add the due regularisers to one micro-batch's loss, back-propagate it, log it."""
        for reg in due:
            value = reg(ctx)
            loss = loss + reg.weight * reg.every * value if reg.every > 1 else loss + reg.weight * value
            values[reg.name] = value.detach()
        opt.backward(loss if self.accumulate == 1 else loss / self.accumulate)
        values[key] = loss.detach()
        _accumulate(logs, values, self.accumulate)

    def draw_fake_labels(self, batch: Batch) -> Tensor | None:
        """The classes of one batch of fakes: None for an unconditional generator, else the
        real batch's labels (``fake_labels="real"``) or uniform draws (``"uniform"``)."""
        t = self._engine()
        k = getattr(t, "num_classes", 0)
        if not k:
            return None
        if self.fake_labels == "real":
            return batch.labels
        return torch.randint(k, (len(batch),)).to(batch.images.device, non_blocking=True)

    def _engine(self) -> Trainer:
        if self.trainer is None:
            raise ConfigError("this GANStep is not attached to a trainer; pass it as Trainer(..., step=...).")
        return self.trainer

    def _micro(self, batch: Batch, z: Tensor, y: Tensor | None = None):
        if self.accumulate == 1:
            return [(batch, z, y)]
        if len(batch) % self.accumulate:
            raise ConfigError(f"a batch of {len(batch)} images does not split into {self.accumulate} "
                              "equal micro-batches; use a batch size divisible by accumulate.")
        ys = [None] * self.accumulate if y is None else y.chunk(self.accumulate)
        return list(zip(batch.split(self.accumulate), z.chunk(self.accumulate), ys))

    def state_dict(self) -> dict[str, Any]:
        """Counters, regulariser weights and states, the augmentation's state (saved in checkpoints)."""
        state = {"d_updates": self.d_updates, "g_updates": self.g_updates,
                 "regularizers": {r.name: {"weight": r.weight, **r.state_dict()} for r in self.regularizers}}
        if self.augment is not None:
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.d_updates = int(state.get("d_updates", 0))
        self.g_updates = int(state.get("g_updates", 0))
        for r in self.regularizers:
            saved = dict(state.get("regularizers", {}).get(r.name, {}))
            if "weight" in saved:
                r.weight = float(saved.pop("weight"))
            r.load_state_dict(saved)
        if self.augment is not None and "augment" in state:
            self.augment.load_state_dict(state["augment"])


class ACGANStep(GANStep):
    """The ACGAN step (Odena et al. 2017): the adversarial objective plus an auxiliary
    classification loss, for a discriminator with an
    :class:`~gankit.conditional.AuxClassifierHead` and a class-conditional generator.

    The discriminator minimises ``objective + class_weight * (CE(real) + CE(fake))`` -- the
    class logits of real images against their labels, of fakes against the classes they
    were generated for -- and the generator ``objective + class_weight * CE(fake)``
    (:func:`~gankit.losses.auxiliary_class_loss`). Both are logged (``class_d``, ``class_g``).

    Args:
        objective: the adversarial loss.
        class_weight: weight of the auxiliary loss (1 in ACGAN).
        **kwargs: as :class:`GANStep` (regularisers, constraints, schedule, ``fake_labels``...).

    Example:
        >>> step = ACGANStep("hinge", class_weight=1.0)
        >>> step.class_weight
        1.0
    """

    def __init__(self, objective: str | AdversarialLoss = "bce", *, class_weight: float = 1.0, **kwargs: Any) -> None:
        super().__init__(objective, **kwargs)
        if not class_weight >= 0:
            raise ConfigError(f"class_weight must be >= 0, got {class_weight!r}.")
        self.class_weight = float(class_weight)

    @staticmethod
    def _class_logits(ctx: StepContext) -> Tensor:
        from .trainer import _unwrap

        head = getattr(_unwrap(ctx.trainer.discriminator), "head", None)
        logits = getattr(head, "class_logits", None)
        if logits is None:
            raise ConfigError("ACGANStep needs a discriminator with an AuxClassifierHead (class logits); "
                              "build it with gankit.conditional.AuxClassifierHead.")
        return logits

    def d_loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective plus the class loss on real and fake images."""
        from ..losses import auxiliary_class_loss

        if ctx.labels is None or ctx.fake_labels is None:
            raise ConfigError("ACGANStep needs labelled data and a class-conditional generator.")
        ctx.real_out = ctx.score(ctx.real)
        real_cls = self._class_logits(ctx)
        ctx.fake_out = ctx.score(ctx.fake)
        fake_cls = self._class_logits(ctx)
        t = ctx.trainer
        cls = auxiliary_class_loss(real_cls, ctx.labels) + auxiliary_class_loss(fake_cls, ctx.fake_labels)
        loss = t.objective.d_loss(ctx.real_out, ctx.fake_out) + self.class_weight * cls
        return loss, {"d_real": t.mean_output(ctx.real_out), "d_fake": t.mean_output(ctx.fake_out),
                      "class_d": cls.detach()}

    def g_loss(self, ctx: StepContext) -> tuple[Tensor, dict[str, Tensor]]:
        """The objective plus the class loss of the fakes."""
        from ..losses import auxiliary_class_loss

        if ctx.fake_labels is None:
            raise ConfigError("ACGANStep needs a class-conditional generator.")
        objective = ctx.trainer.objective
        if objective.g_uses_real:
            ctx.real_out = ctx.score(ctx.real)
        ctx.fake_out = ctx.score(ctx.fake)
        cls = auxiliary_class_loss(self._class_logits(ctx), ctx.fake_labels)
        return objective.generator_loss(ctx.fake_out, ctx.real_out) + self.class_weight * cls, {"class_g": cls.detach()}


def _accumulate(logs: dict[str, Tensor], values: dict[str, Tensor], parts: int) -> None:
    """Log the mean over micro-batches (the value itself without accumulation)."""
    for k, v in values.items():
        if parts == 1:
            logs[k] = v
        else:
            logs[k] = v / parts if k not in logs else logs[k] + v / parts
