"""Outside data-parallel training the collectives are identities and nothing is sharded twice."""

import keras
import numpy as np
import pytest

from keras_rtmdet.distribute import replicas
from keras_rtmdet.distribute.data_parallel import _chosen


def test_single_replica_collectives_are_no_ops():
    x = keras.ops.convert_to_tensor(np.array([1.5, -2.0], "float32"))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(replicas.cross_replica_mean(x)), [1.5, -2.0])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(replicas.scale_loss_for_gradient_sum(x)), [1.5, -2.0])
    assert replicas.replicas_in_sync() == 1 and replicas.data_parallel_size() == 1
    assert replicas.process_count() == 1 and replicas.process_rank() == 0 and replicas.is_chief()


@pytest.mark.backend_independent
def test_device_choice():
    assert _chosen(None, ["a", "b"]) == ["a", "b"]
    assert _chosen(1, ["a", "b"]) == ["a"]
    assert _chosen(["b"], ["a", "b"]) == ["b"]
    with pytest.raises(ValueError, match="3 devices asked for, 2 available"):
        _chosen(3, ["a", "b"])


@pytest.mark.backend_independent
def test_shards_are_disjoint_and_cover_the_images():
    from keras_rtmdet.data.source_dataset import source_dataset
    from keras_rtmdet.data.synthetic import SyntheticShapesSource

    source = SyntheticShapesSource(6, image_size=(32, 32), seed=0)

    def ids(index, epochs=2):
        ds = source_dataset(source, shuffle=True, seed=None, repeat=True, shard=(2, index))
        return [int(s["image_id"]) for s in ds.take(3 * epochs).as_numpy_iterator()]

    first, second = ids(0), ids(1)
    for epoch in range(2):
        drawn = first[3 * epoch : 3 * epoch + 3] + second[3 * epoch : 3 * epoch + 3]
        assert sorted(drawn) == [1, 2, 3, 4, 5, 6], (first, second)
    with pytest.raises(ValueError, match="shard index 2"):
        source_dataset(source, shard=(2, 2))
