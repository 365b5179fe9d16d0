// The smallest login plugin: allows every sign-up and sign-in, changing nothing. It is the baseline of the plugin
// benchmarks (the cost of a fresh sandboxed instance per call) and a starting point for C plugins.
#include "login.h"

void exports_login_pre_registration(login_user_t *user, login_request_t *request, login_decision_t *ret) {
  login_user_free(user);
  login_request_free(request);
  ret->tag = GATEHOUSE_PLUGIN_LOGIN_TYPES_DECISION_ALLOW;
}

void exports_login_post_login(login_user_t *user, login_request_t *request, login_decision_t *ret) {
  login_user_free(user);
  login_request_free(request);
  ret->tag = GATEHOUSE_PLUGIN_LOGIN_TYPES_DECISION_ALLOW;
}
