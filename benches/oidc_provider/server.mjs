// The baseline for scripts/bench-oidc: Node's oidc-provider with its in-memory adapter, one confidential client
// allowed client_credentials, JWT access tokens signed with the same algorithm as the Gatehouse tenant, and
// introspection on. oidc-provider cannot introspect JWT access tokens, so the introspection baseline runs with
// FORMAT=opaque (its own store lookup). Usage: node server.mjs PORT ALG CLIENT_ID CLIENT_SECRET SCOPE [FORMAT]
import { generateKeyPair, exportJWK } from 'jose';
import Provider from 'oidc-provider';

const [port, alg, clientId, clientSecret, scope, format = 'jwt'] = process.argv.slice(2);
const { privateKey } = await generateKeyPair(alg, { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), alg, use: 'sig', kid: 'bench' };
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:gatehouse:bench';

const provider = new Provider(issuer, {
  jwks: { keys: [jwk] },
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
    scope,
    id_token_signed_response_alg: alg,
  }],
  scopes: [scope],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({ scope, audience: resource, accessTokenFormat: format, jwt: { sign: { alg } } }),
    },
  },
});
provider.listen(Number(port), '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
