"""Concrete generative models for the loop engine (each a cached factory)."""
from sims.models.gaussian import GaussianParams, gaussian
from sims.models.categorical import categorical
from sims.models.ols import OLSData, ols_fixed_design, ols_fresh_design
from sims.models.kde import Mixture, kde, gaussian_mixture_sampler
from sims.models.mean_estimation import mean_estimation, mean_estimation_coupler
from sims.models.ridge import RidgeData, ridge, ridge_pool, ridge_spec
from sims.models.linear_attention import (ICLData, ICLTask, LinearAttention, icl_real_sampler,
                                          icl_task, linear_attention)

__all__ = ["GaussianParams", "gaussian", "categorical", "OLSData", "ols_fixed_design",
           "ols_fresh_design", "Mixture", "kde", "gaussian_mixture_sampler",
           "mean_estimation", "mean_estimation_coupler", "RidgeData", "ridge", "ridge_pool",
           "ridge_spec", "ICLData", "ICLTask", "LinearAttention", "icl_real_sampler", "icl_task",
           "linear_attention"]
