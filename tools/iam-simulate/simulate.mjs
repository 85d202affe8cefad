// Evaluate IAM requests against identity policies with @cloud-copilot/iam-simulate.
// stdin: {"account": "123…", "requests": [{"principal", "policy", "action", "resource", "context"}]}
// stdout: one result per request: {"decision": "Allowed" | "ImplicitlyDenied" | …, "errors"?}
import { runSimulation } from '@cloud-copilot/iam-simulate'

let input = ''
for await (const chunk of process.stdin) input += chunk
const { account, requests } = JSON.parse(input)
const results = []
for (const r of requests) {
  const answer = await runSimulation(
    {
      identityPolicies: [{ name: 'task', policy: r.policy }],
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        action: r.action,
        principal: r.principal,
        resource: { resource: r.resource, accountId: account },
        contextVariables: r.context
      }
    },
    {}
  )
  if (answer.resultType === 'error') {
    results.push({ decision: 'Error', errors: answer.errors })
  } else {
    results.push({ decision: answer.overallResult })
  }
}
process.stdout.write(JSON.stringify(results))
