"""Flip averaging (`--flip-average`, on by default where the model names its flip pairs): each face crop and its
mirror image go through the engine in one call, and the mirror's points, mirrored back with left and right swapped,
are averaged with the crop's.

It wraps any backend and is one itself (`train evaluate` scores it as any other); the tracker takes both the crops'
own points, to decide on, and the averaged ones, to write and draw (`predict_both`).
"""

from __future__ import annotations

import numpy as np

from engines.backend import Backend, ModelError, ModelInfo, check_crops
from engines.errors import UserError
from engines.model_meta import OUTPUT_NAME
from tracker.keypoints import flip_keypoints, keypoint_set_for


class FlipAveraged:
    """A backend whose points are the mean of the wrapped backend's on each crop and (mirrored back, left and
    right swapped by the model's flip pairs) on its mirror image: twice the faces per engine call. Attribute
    heads (`predict_all`) are read from the crop itself: a mirror turns a left profile into a right one."""

    def __init__(self, backend: Backend) -> None:
        info = backend.info
        self.kps = keypoint_set_for(str(info.extra.get("keypoint_set", "model")), info.keypoint_names,
                                    info.flip_pairs)  # a registered set's own pairs where the file names none
        if len(self.kps) > 1 and not self.kps.flip_pairs:
            raise UserError(f"--flip-average: model {info.path} names no left/right flip pairs, so its mirror "
                            "image's points cannot be swapped back")
        try:
            self.kps.flip_permutation  # noqa: B018 (checked once here: pairs naming a point the model lacks)
        except ValueError:
            raise ModelError(f"model {info.path}: its flip pairs name points it does not predict") from None
        self.backend = backend
        self.name = backend.name
        self.info: ModelInfo = info
        if not callable(getattr(backend, "predict_all", None)):
            self.predict_all = None  # as the wrapped backend: keypoints only (the tracker's --attributes checks)

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """crops: (N, S, S) uint8 -> float32 (N, K, 2) crop-pixel keypoints, averaged with the mirror's."""
        return self.predict_both(crops)[1]

    def predict_all(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """The wrapped backend's outputs on the crops, with the keypoints averaged with the mirror's."""
        outputs, averaged = self.predict_all_both(crops)
        return {**outputs, OUTPUT_NAME: averaged}

    def predict_both(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the crops' own keypoints, the averaged ones) from one engine call: the tracker decides on the former
        (who is a face, how sure, where to crop next), so --flip-average moves the points it writes, not its
        decisions."""
        n, both = self._with_mirrors(crops)
        points = self.backend.predict(both)
        return points[:n], self._average(points[:n], points[n:])

    def predict_all_both(self, crops: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(the wrapped backend's outputs on the crops themselves, the averaged keypoints) from one engine call."""
        n, both = self._with_mirrors(crops)
        outputs = self.backend.predict_all(both)
        own = {name: value[:n] for name, value in outputs.items()}
        return own, self._average(outputs[OUTPUT_NAME][:n], outputs[OUTPUT_NAME][n:])

    def _with_mirrors(self, crops: np.ndarray) -> tuple[int, np.ndarray]:
        """(N, the N crops followed by their mirror images): one engine batch."""
        crops = check_crops(crops, self.info.input_size)
        return len(crops), np.concatenate([crops, crops[:, :, ::-1]])

    def _average(self, plain: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
        back = flip_keypoints(mirrored, self.info.input_size, self.kps)
        return ((plain + back) / 2.0).astype(np.float32)


def deciding(backend: Backend) -> Backend:
    """The backend whose points the tracker decides on (who is a face, where to crop next): the one a
    FlipAveraged wraps, else the backend itself."""
    return backend.backend if isinstance(backend, FlipAveraged) else backend


NO_FLIP_HINT = "; --no-flip-average runs it without flip averaging"


def flip_averaged(engine: Backend | None, wanted: bool | None) -> Backend | None:
    """The engine as `--flip-average/--no-flip-average` ask: None (neither: the default) averages with the mirror
    image where the model names its left/right flip pairs and runs the engine as it is where it names none; True
    (asked for) refuses such a model (UserError); False runs the engine as it is. Flip pairs naming points the
    model lacks are a broken model file (ModelError) unless False. None for no engine."""
    return flip_averaged_stages(engine, None, wanted)[0] if engine is not None else None


def flip_averaged_stages(engine: Backend, stage2: Backend | None, wanted: bool | None
                         ) -> tuple[Backend, Backend | None]:
    """The engine and the --refine second stage as `--flip-average/--no-flip-average` ask (`flip_averaged`): both
    average or neither; by default both where both can be mirrored, else neither."""
    if wanted is False:
        return engine, stage2
    try:
        return FlipAveraged(engine), None if stage2 is None else FlipAveraged(stage2)
    except ModelError as err:
        raise ModelError(f"{err}{NO_FLIP_HINT if wanted is None else ''}") from None
    except UserError:
        if wanted:
            raise
        return engine, stage2
