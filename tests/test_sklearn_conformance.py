"""scikit-learn's estimator checks; the one documented exception is listed.

``check_estimators_unfitted`` wants scikit-learn's own ``NotFittedError``
class; lateo raises ``lateo.NotFittedError`` (also a ``ValueError`` and an
``AttributeError``) so that scikit-learn stays out of the core dependencies
(README, "Conformance with scikit-learn").
"""

import warnings

from sklearn.utils.estimator_checks import parametrize_with_checks

from lateo import GaussianMixture, KMeans

EXPECTED = {"check_estimators_unfitted": "lateo raises lateo.NotFittedError, not scikit-learn's class"}

warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base.BaseEstimator`.*")


@parametrize_with_checks(
    [GaussianMixture(progress=False), KMeans(n_clusters=3, progress=False)],
    expected_failed_checks=lambda est: EXPECTED,
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
