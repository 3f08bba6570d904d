// Basketball drive HMM, exponential emissions — mirrors examples/posteriordb/bball_drive_event_0-hmm_drive_0.ppl
data {
  int<lower=1> K;
  int<lower=1> N;
  array[N] real u;
  array[N] real v;
  matrix<lower=0>[K, K] alpha;
}
parameters {
  simplex[K] theta1;
  simplex[K] theta2;
  positive_ordered[K] phi;
  positive_ordered[K] lambda;
}
transformed parameters {
  array[K] simplex[K] theta = {theta1, theta2};
}
model {
  for (k in 1:K)
    target += dirichlet_lpdf(theta[k] | alpha[k, :]');
  target += normal_lpdf(phi[1] | 0, 1);
  target += normal_lpdf(phi[2] | 3, 1);
  target += normal_lpdf(lambda[1] | 0, 1);
  target += normal_lpdf(lambda[2] | 3, 1);
  {
    array[N, K] real gamma;
    for (k in 1:K)
      gamma[1, k] = exponential_lpdf(u[1] | phi[k]) + exponential_lpdf(v[1] | lambda[k]);
    for (t in 2:N) {
      for (k in 1:K) {
        array[K] real acc;
        for (j in 1:K)
          acc[j] = gamma[t - 1, j] + log(theta[j, k]) + exponential_lpdf(u[t] | phi[k])
                   + exponential_lpdf(v[t] | lambda[k]);
        gamma[t, k] = log_sum_exp(acc);
      }
    }
    target += log_sum_exp(gamma[N]);
  }
}
generated quantities {
  // Viterbi; as in the posteriordb program, best_logp[1, K] (not [1, k]) is set in the first
  // loop, so best_logp[1, 1] stays NaN.
  array[N] int<lower=1, upper=K> z_star;
  real log_p_z_star;
  {
    array[N, K] int back_ptr;
    array[N, K] real best_logp;
    for (k in 1:K)
      best_logp[1, K] = exponential_lpdf(u[1] | phi[k]) + exponential_lpdf(v[1] | lambda[k]);
    for (t in 2:N) {
      for (k in 1:K) {
        best_logp[t, k] = negative_infinity();
        for (j in 1:K) {
          real logp = best_logp[t - 1, j] + log(theta[j, k]) + exponential_lpdf(u[t] | phi[k])
                      + exponential_lpdf(v[t] | lambda[k]);
          if (logp > best_logp[t, k]) {
            back_ptr[t, k] = j;
            best_logp[t, k] = logp;
          }
        }
      }
    }
    log_p_z_star = max(best_logp[N]);
    for (k in 1:K)
      if (best_logp[N, k] == log_p_z_star)
        z_star[N] = k;
    for (t in 1:(N - 1))
      z_star[N - t] = back_ptr[N - t + 1, z_star[N - t + 1]];
  }
}
