/* Calls to the v1 API with the operator's bearer token. The token is kept in this tab's
 * sessionStorage only (see api/dashboard.py), and failures become an ApiError carrying the
 * problem+json answer. */

import { state } from "./page.js";

const TOKEN_KEY = "clustermon.token";

var token = null;
var tokenRejected = function () {};

export function ApiError(status, message, problem) {
  this.status = status;
  this.message = message;
  this.problem = problem;
}

export function useToken(value) { token = value; }

export function hasToken() { return !!token; }

export function authorization() { return "Bearer " + token; }

export function savedToken() {
  try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
}

export function rememberToken() {
  try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode */ }
}

export function forgetToken() {
  token = null;
  try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
}

// Called with the API's reason when a signed-in token stops being accepted.
export function onTokenRejected(handler) { tokenRejected = handler; }

export function api(path, options) {
  options = options || {};
  var headers = { "Accept": "application/json", "Authorization": authorization() };
  var init = { method: options.method || "GET", headers: headers, cache: "no-store" };
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  return fetch(path, init).then(function (response) {
    var type = response.headers.get("Content-Type") || "";
    var parsed = type.indexOf("json") >= 0 ? response.json() : Promise.resolve(null);
    return parsed.then(function (data) {
      if (!response.ok) {
        var message = (data && (data.detail || data.title)) || ("HTTP " + response.status);
        if (response.status === 401 && state.principal) { tokenRejected(message); }
        throw new ApiError(response.status, message, data);
      }
      return data;
    });
  });
}
