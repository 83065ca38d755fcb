"""The config's model against the checkpoint's: its meta-architecture and
feature extractor (from the checkpoint's own pipeline.config, else its
structure), and the TF2 feature extractors the model builder knows."""

from __future__ import annotations

from zoo.config import restore_rules
from zoo.config.checks.common import (
    EXTRACTOR_UNSUPPORTED,
    RESTORE_MISMATCH,
    UNBOUND,
    CheckpointFacts,
    Finding,
    Severity,
    first_scalar,
    last_name,
)
from zoo.config.textproto import Document
from zoo.errors import ConfigError


def structure_mismatch(checkpoint: CheckpointFacts, arch: str, effective: str, line: int | None) -> Finding | None:
    """The ``model/`` children the meta-architecture restores, against the checkpoint's."""
    missing = restore_rules.structure_problems(arch, effective, checkpoint.roots, checkpoint.model_children)
    if not missing:
        return None
    children = ", ".join(checkpoint.model_children) or "nothing"
    guess = restore_rules.guess_architecture(checkpoint.model_children)
    return Finding("arch-mismatch", Severity.ERROR, "model", line,
                   f"the config's meta-architecture is {arch}, whose {effective!r} restore needs {', '.join(missing)}, "
                   f"but the checkpoint's model/ holds {children}" + (f" (a {guess} checkpoint)" if guess else ""),
                   UNBOUND.format("N"), f"a {arch} checkpoint, or a config for the checkpoint's architecture")  # fmt: skip


def architecture_rules(doc: Document, checkpoint: CheckpointFacts, arch: str, checkpoint_type: str) -> list[Finding]:
    reference = checkpoint.reference
    if reference is None:
        return [_unchecked(checkpoint, arch)]
    try:
        comparison = restore_rules.compare(doc, reference, checkpoint_type)
    except ConfigError as exc:
        return [_unchecked(checkpoint, arch, str(exc))]
    return _comparison_findings(comparison, checkpoint)


def _unchecked(checkpoint: CheckpointFacts, arch: str, why: str | None = None) -> Finding:
    if why is None and checkpoint.reference_error is not None:
        why = f"the checkpoint's pipeline.config cannot be parsed ({checkpoint.reference_error})"
    if why is None:
        places = ", ".join(str(p) for p in checkpoint.searched) or "nowhere"
        why = f"no pipeline.config found for this checkpoint (looked at {places})"
    children = ", ".join(checkpoint.model_children) or "-"
    return Finding("arch-unchecked", Severity.NOTE, f"model.{arch}", None,
                   f"{why}: the feature extractor's type and settings could not be compared; checked only "
                   f"the checkpoint's structure (root objects: {', '.join(checkpoint.roots)}; model/: {children})")  # fmt: skip


def _comparison_findings(comparison: restore_rules.Comparison, checkpoint: CheckpointFacts) -> list[Finding]:
    ours, theirs, kind = comparison.ours, comparison.theirs, comparison.checkpoint_type
    owner = f"cached zoo model {checkpoint.zoo_model}: " if checkpoint.zoo_model else ""
    source = f"the checkpoint's pipeline.config ({owner}{checkpoint.reference_path})"
    fix = (f"fine-tune from a {ours.meta_architecture} checkpoint, or start from a config for the checkpoint's "
           f"{theirs.meta_architecture} ({theirs.extractor})")  # fmt: skip
    if comparison.meta_architecture_differs:
        return [Finding("arch-mismatch", Severity.ERROR, "model", ours.line,
                        f"the config's meta-architecture is {ours.meta_architecture} ({ours.extractor}) but {source} "
                        f"is {theirs.meta_architecture} ({theirs.extractor})", UNBOUND.format("N"), fix)]  # fmt: skip
    path = f"model.{ours.meta_architecture}.feature_extractor.type"
    if comparison.extractor_differs:
        what = "backbone" if kind == "classification" else "feature extractor"
        sides = (f"{restore_rules.backbone(ours.extractor or '')} ({ours.extractor})" if kind == "classification"
                 else ours.extractor, restore_rules.backbone(theirs.extractor or "") if kind == "classification"
                 else theirs.extractor)  # fmt: skip
        return [Finding("extractor-mismatch", Severity.ERROR, path, ours.line,
                        f"{kind!r} restores the {what}: the config's is {sides[0]}, the checkpoint's is "
                        f"{sides[1]} ({source})",
                        RESTORE_MISMATCH,
                        f'type: "{theirs.extractor}" (the checkpoint\'s), or a {ours.extractor} checkpoint')]  # fmt: skip
    arch_path = f"model.{ours.meta_architecture}."
    findings = [
        Finding("arch-setting-mismatch", Severity.ERROR, arch_path + d.path, _setting_line(d),
                f"{d.describe()}; {kind!r} restores this part and the setting changes its variables",
                RESTORE_MISMATCH,
                f"{last_name(d.path)}: {d.theirs.spelled() if d.theirs else '(remove it)'}")
        for d in comparison.blocking
    ]  # fmt: skip
    findings += [
        Finding("arch-setting-unknown", Severity.WARNING, arch_path + d.path, _setting_line(d),
                f"{d.describe()}; zoo cannot tell whether it changes the restored variables", None,
                f"{last_name(d.path)}: {d.theirs.spelled() if d.theirs else '(remove it)'}, unless you know it "
                "changes no variable")
        for d in comparison.uncertain
    ]  # fmt: skip
    if comparison.accepted:
        shown = "; ".join(d.describe() for d in comparison.accepted[:6])
        more = f"; and {len(comparison.accepted) - 6} more" if len(comparison.accepted) > 6 else ""
        findings.append(Finding("arch-accepted", Severity.NOTE, arch_path.rstrip("."), None,
                                f"differences from {source} that {kind!r} does not restore or that change no "
                                f"weights, accepted: {shown}{more}"))  # fmt: skip
    return findings


def _setting_line(difference: restore_rules.Difference) -> int | None:
    return difference.ours.line if difference.ours and difference.ours.line else None


def extractor_rules(doc: Document, arch: str | None, trainer: str = "tf2") -> list[Finding]:
    """The feature extractor must exist in the model builder of the trainer the config is for."""
    known = restore_rules.EXTRACTORS[trainer].get(arch or "")
    node = first_scalar(doc, f"model.{arch}.feature_extractor.type") if known is not None else None
    if node is None or node.kind != "string" or node.as_str() in known:  # type: ignore[operator]
        return []
    name = node.as_str()
    other = "tf1" if trainer == "tf2" else "tf2"
    return [Finding("extractor-unsupported", Severity.ERROR, f"model.{arch}.feature_extractor.type", node.line,
                    f"{name!r} is not a {trainer.upper()} feature extractor for {arch} (a {other.upper()}-only or "
                    "custom type)", EXTRACTOR_UNSUPPORTED.format(name), _extractor_fix(name, known, trainer))]  # fmt: skip


def _extractor_fix(name: str, known: frozenset[str], trainer: str) -> str:
    """The same network's name in this trainer's builder, where it has one."""
    if trainer == "tf2":
        keras = f"{name}_keras"
        return (f'type: "{keras}" (its TF2 Keras version) with a TF2 checkpoint' if keras in known
                else "a TF2 feature extractor (see `zoo list --family tf2-detection`), or TF1's model_main.py")  # fmt: skip
    plain = name.removesuffix("_keras")
    return (f'type: "{plain}" (its TF1 version) with a TF1 checkpoint' if plain != name and plain in known
            else "a TF1 feature extractor (see `zoo list --family tf1-detection`), or model_main_tf2.py "
                 "(`zoo check --trainer tf2`)")  # fmt: skip
